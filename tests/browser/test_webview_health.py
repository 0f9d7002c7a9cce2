"""The WebView's health panel in a real browser (web/health.js): the members
with whether they vote and their applied rev, the fault-tolerance banner of
one node and of three members losing two of them, and the leases with their
files. Nodes and browser as in test_webview.py."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from procutil import cluster_key_file
from test_webview import SHOW, Node, expect, open_live, row
from test_webview import pytestmark as BROWSER

pytestmark = BROWSER

#: The members' --timeout: a member not heard from for this long no longer
#: counts towards fault_tolerance (SPEC §3), so the banner follows within it
#: plus the 2 s of the page's poll; the slack is for loaded CI machines.
TIMEOUT = 3
FOLLOW = (TIMEOUT + 2) * 1000 + SHOW


def banner(page: Any) -> Any:
    return page.locator("#ft")


def test_one_node_members_and_banner(node: Node, page: Any) -> None:
    """One voting member: it is listed as voting with its applied rev, and
    the banner says the cluster can lose no member (amber)."""
    open_live(page, node.web_url + "/")
    me = page.locator("#members tbody tr")
    expect(me).to_have_count(1)
    expect(me.locator(".m-voting")).to_have_text("yes")
    expect(me.locator(".m-applied")).to_have_text(re.compile(r"^\d+$"))
    expect(me.locator(".m-note")).to_have_text("serving this page")
    expect(banner(page)).to_have_attribute("data-level", "warn")
    expect(page.locator("#ft-text")).to_have_text("can lose 0 members")
    rev = node.put("/some/write", "x")
    # the applied rev follows the node
    page.wait_for_function(
        f"() => Number(document.querySelector('#members .m-applied').textContent) >= {rev}",
        timeout=SHOW)


def test_leases_panel_follows_grant_and_revoke(node: Node, page: Any) -> None:
    """A granted lease appears with its ttl and the file attached to it; on
    revoke it goes, and so does its file."""
    open_live(page, node.web_url + "/")
    expect(page.locator("#no-leases")).to_be_visible()
    lease = node.request("POST", "/v1/lease", json.dumps({"ttl": 60}).encode())["id"]
    node.request("PUT", f"/v1/store/svc/leader?lease={lease}", b"me")
    entry = page.locator(f'#leases tr.lease[data-id="{lease}"]')
    expect(entry.locator(".l-ttl")).to_have_text("60 s", timeout=SHOW)
    expect(entry.locator(".l-file")).to_have_text(["/svc/leader"], timeout=SHOW)
    expect(page.locator("#no-leases")).to_be_hidden()
    expect(row(page, "/svc/leader").locator(".v")).to_have_text("me")
    node.request("DELETE", f"/v1/lease/{lease}")
    expect(entry).to_have_count(0, timeout=SHOW)
    expect(page.locator("#no-leases")).to_be_visible()
    expect(row(page, "/svc/leader")).to_have_count(0, timeout=SHOW)


@pytest.fixture
def three(tmp_path: Path) -> Iterator[list[Node]]:
    """Three members (--timeout 3) that all vote; continued and stopped after."""
    nodes = [Node(tmp_path, cluster="health") for _ in range(3)]
    key = cluster_key_file(tmp_path)
    for n in nodes:
        peers = ",".join(f"127.0.0.1:{p.listen}" for p in nodes if p is not n)
        n.args = ["--peers", peers, "--cluster-key-file", key, "--timeout", str(TIMEOUT)]
    try:
        for n in nodes:
            n.start()
        deadline = time.monotonic() + 30
        while not all(n.request("GET", "/v1/self")["voting"] for n in nodes):
            if time.monotonic() > deadline:
                raise AssertionError("the three did not all come to vote:\n" + nodes[0].log())
            time.sleep(0.2)
        yield nodes
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGCONT)
        for n in nodes:
            n.stop()


def test_banner_of_three_members_losing_two(three: list[Node], page: Any) -> None:
    """Three voting members: green, can lose 1. One paused (SIGSTOP): amber,
    can lose 0. A second paused: red, no quorum."""
    a, b, c = three
    open_live(page, a.web_url + "/")
    expect(page.locator("#members tbody tr.member")).to_have_count(3)
    expect(page.locator("#members .m-voting")).to_have_text(["yes", "yes", "yes"])
    expect(banner(page)).to_have_attribute("data-level", "ok", timeout=FOLLOW)
    expect(page.locator("#ft-text")).to_have_text("can lose 1 member")
    expect(banner(page)).to_have_css("background-color", "rgb(218, 251, 225)")
    assert b.proc is not None and c.proc is not None
    b.proc.send_signal(signal.SIGSTOP)
    expect(banner(page)).to_have_attribute("data-level", "warn", timeout=FOLLOW)
    expect(page.locator("#ft-text")).to_have_text("can lose 0 members")
    c.proc.send_signal(signal.SIGSTOP)
    expect(banner(page)).to_have_attribute("data-level", "bad", timeout=FOLLOW)
    expect(page.locator("#ft-text")).to_have_text("no quorum")
    expect(banner(page)).to_have_css("background-color", "rgb(255, 235, 233)")
