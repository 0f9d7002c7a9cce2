"""The WebView's history in a real browser (web/history.js): the tree as of
an old rev (by the rev box and by the slider), left alone by live changes;
the changes since a rev highlighted; back to live; and a rev the node no
longer keeps. Nodes and browser as in test_webview.py."""

from __future__ import annotations

import json
import re
import urllib.error
from typing import Any

from test_webview import SHOW, Node, expect, open_live, row
from test_webview import pytestmark as BROWSER

pytestmark = BROWSER


def show(page: Any, at: object = "", since: object = "") -> None:
    page.fill("#at-rev", str(at))
    page.fill("#since-rev", str(since))
    page.press("#at-rev", "Enter")


def has_class(name: str) -> Any:
    return re.compile(rf"(^|\s){name}(\s|$)")


def test_history_view_compare_and_back_to_live(node: Node, page: Any) -> None:
    """At r1 the tree is as it was (a=1, no b, c there) and stays so while
    writes go on (the live rev moves on at the top); compared with r1, a is
    changed, b added, c deleted; "live" shows the store as it is now."""
    node.put("/h/c", "gone soon")
    r1 = node.put("/h/a", "1")
    node.put("/h/a", "2")
    node.put("/h/b", "1")
    node.delete("/h/c")
    open_live(page, node.web_url + "/")
    expect(row(page, "/h/a").locator(".v")).to_have_text("2")

    show(page, at=r1)
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", "history")
    expect(page.locator("#view-rev")).to_have_text(str(r1))
    expect(row(page, "/h/a").locator(".v")).to_have_text("1")
    expect(row(page, "/h/a").locator(".c-rev")).to_have_text(str(r1))
    expect(row(page, "/h/c").locator(".v")).to_have_text("gone soon")
    expect(row(page, "/h/b")).to_have_count(0)

    # Live changes leave the view alone; the live rev is still shown.
    later = node.put("/h/later", "after")
    # (at least: the node's pulse may have recorded its applied rev since)
    page.wait_for_function(
        f"() => Number(document.getElementById('store-rev').textContent) >= {later}", timeout=SHOW)
    expect(page.locator("#rev-label")).to_have_text("live rev")
    expect(row(page, "/h/later")).to_have_count(0)
    expect(row(page, "/h/a").locator(".v")).to_have_text("1")

    # The slider picks a rev too.
    page.eval_on_selector(
        "#at-slider",
        "(s, v) => { s.value = v; s.dispatchEvent(new Event('input', {bubbles: true})); }",
        str(r1 + 1),
    )
    expect(page.locator("#at-rev")).to_have_value(str(r1 + 1))
    expect(page.locator("#view-rev")).to_have_text(str(r1 + 1), timeout=SHOW)
    expect(row(page, "/h/a").locator(".v")).to_have_text("2")
    expect(row(page, "/h/b")).to_have_count(0)

    # Changes since r1, up to now.
    show(page, since=r1)
    expect(page.locator("#hist-note")).to_contain_text(f"changes since rev {r1}")
    expect(row(page, "/h/a")).to_have_class(has_class("diff-changed"))
    expect(row(page, "/h/a").locator(".v")).to_have_text("2")
    expect(row(page, "/h/a").locator(".was")).to_have_text("was 1")
    expect(row(page, "/h/b")).to_have_class(has_class("diff-added"))
    expect(row(page, "/h/later")).to_have_class(has_class("diff-added"))
    expect(row(page, "/h/c")).to_have_class(has_class("diff-deleted"))
    expect(row(page, "/h/c").locator(".name")).to_have_css("text-decoration-line", "line-through")
    expect(row(page, "/h")).to_have_class(has_class("has-diffs"))
    expect(row(page, "/h/a")).to_have_css("background-color", "rgb(255, 241, 194)")
    expect(row(page, "/h/b")).to_have_css("background-color", "rgb(218, 251, 225)")
    row(page, "/h/a").locator(".name").click()
    expect(page.locator("#detail-was")).to_have_text("1")
    page.locator("#detail-close").click()

    # Two revs the other way round are the same comparison.
    show(page, at=r1, since=later)
    expect(page.locator("#at-rev")).to_have_value(str(later))
    expect(row(page, "/h/c")).to_have_class(has_class("diff-deleted"))

    page.click("#go-live")
    expect(status).to_have_attribute("data-state", "live")
    expect(row(page, "/h/c")).to_have_count(0, timeout=SHOW)
    expect(row(page, "/h/b")).not_to_have_class(has_class("diff-added"))
    expect(page.locator("#viewing")).to_be_hidden()
    node.put("/h/live-again", "yes")
    expect(row(page, "/h/live-again").locator(".v")).to_have_text("yes", timeout=SHOW)


def oldest(node: Node) -> int:
    """The node's oldest rev, from its TOO_LATE answer to a read at rev 1."""
    try:
        node.request("GET", "/v1/stat/?rev=1")
    except urllib.error.HTTPError as e:
        body = e.read()
        assert e.code == 410, body
        return int(json.loads(body)["oldest"])
    return 1


def test_a_rev_out_of_the_window_says_the_oldest(start_node: Any, page: Any) -> None:
    """A rev older than the node's --hist is refused with the oldest rev
    still available, and the live view stays; a rev in the window is shown;
    a rev not there yet is refused."""
    node = start_node(args=("--hist", "10"))
    for i in range(40):
        node.put(f"/many/f{i:02d}", str(i))
    open_live(page, node.web_url + "/")
    show(page, at=2)
    note = page.locator("#hist-note")
    expect(note).to_contain_text("rev 2 is no longer in this node's history")
    text = note.inner_text()
    m = re.search(r"oldest rev still available is (\d+)", text)
    assert m, text
    said = int(m.group(1))
    assert 2 < said <= oldest(node)
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    expect(page.locator("#at-slider")).to_have_attribute("min", str(said))
    now = node.put("/many/last", "x")
    show(page, at=now - 1)
    expect(page.locator("#status")).to_have_attribute("data-state", "history")
    page.fill("#filter", "/many/f39")  # far below the rows in view
    expect(row(page, "/many/f39").locator(".v")).to_have_text("39")
    page.fill("#filter", "/many/last")
    expect(page.locator("#empty")).to_be_visible()
    expect(row(page, "/many/last")).to_have_count(0)
    show(page, at=now + 1000)
    expect(note).to_contain_text("is not there yet")
