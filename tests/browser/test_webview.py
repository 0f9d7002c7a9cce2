"""The WebView in a real browser: headless Chromium (Debian's, at
/usr/bin/chromium) driven by Playwright against real nodes (``twistd doozer``
subprocesses on 127.0.0.1).

Run with ``pytest -m browser tests/browser``. Playwright's own browser
download is not used: the tests point it at the system Chromium. The
fixtures (nodes, browser, page) are in conftest.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import pytest
from procutil import free_port

CHROMIUM = os.environ.get("DOOZER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]
REPO = Path(__file__).resolve().parent.parent.parent
#: How long the page may take to show a change (the issue asks for a second;
#: the slack is for slow CI machines).
SHOW = 5_000
#: Longest backoff between the page's retries (5 s, +20% jitter), plus SHOW.
RETRY = 11_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (see .ci/run)",
    ),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


# ----------------------------------------------------------------------
# nodes


class Node:
    """One ``twistd -n doozer`` process with its API and WebView ports.

    :param workdir: where its log goes.
    :param env: extra environment (e.g. ``DOOZER_RWSECRET``).
    """

    def __init__(self, workdir: Path, env: Optional[dict[str, str]] = None,
                 cluster: str = "webview", args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.args = list(args)
        self.listen = free_port()
        self.web = free_port()
        self.cluster = cluster
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        )
        self.env.update(env or {})
        self.secret = (env or {}).get("DOOZER_RWSECRET")
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.listen}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web}"

    def start(self) -> None:
        """Start the process and wait until both ports answer."""
        self.starts += 1
        log = open(self.workdir / f"node-{self.listen}-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "doozer",
                "--listen", f"127.0.0.1:{self.listen}",
                "--web", f"127.0.0.1:{self.web}",
                "--cluster", self.cluster,
                *self.args,
            ],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.request("GET", "/v1/rev")
                self.request("GET", "/v1/rev", base=self.web_url)
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"node did not come up:\n{self.log()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and wait for it."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.workdir.glob("node-*.log"))
        )

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                base: Optional[str] = None) -> Any:
        req = urllib.request.Request((base or self.api_url) + path, data=body, method=method)
        if self.secret:
            req.add_header("Authorization", f"Bearer {self.secret}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def put(self, path: str, value: bytes | str) -> int:
        """Write a file through the node's API; return its new rev."""
        data = value.encode() if isinstance(value, str) else value
        return int(self.request("PUT", "/v1/store" + path, data)["rev"])

    def delete(self, path: str) -> int:
        return int(self.request("DELETE", "/v1/store" + path)["rev"])


# ----------------------------------------------------------------------
# browser (the fixtures: conftest.py)


def expect(locator: Any) -> Any:
    return sync_api.expect(locator)


def row(page: Any, path: str) -> Any:
    return page.locator(f'.row[data-path="{path}"]')


def retry_now(page: Any) -> None:
    """Cut the page's backoff short (the button may be hidden mid-attempt)."""
    page.evaluate("document.getElementById('retry-now').click()")


def open_live(page: Any, url: str) -> None:
    page.goto(url)
    expect(page.locator("#status")).to_have_attribute("data-state", "live")


# ----------------------------------------------------------------------
# tests


def test_tree_and_live_changes(node: Node, page: Any) -> None:
    """The page shows the cluster, its member and the tree, and a write made
    through the API appears, highlighted, without reloading the page."""
    node.put("/demo/greeting", "hello")
    open_live(page, node.web_url + "/")
    expect(page.locator("#cluster-name")).to_have_text(node.cluster)
    expect(page.locator("#members tbody tr")).to_have_count(1)
    expect(page.locator("#members .m-applied")).to_have_text(re.compile(r"^\d+$"))
    expect(row(page, "/demo/greeting").locator(".v")).to_have_text("hello")
    page.evaluate("window.__notReloaded = true")

    rev = node.put("/demo/fresh", "brand new")
    fresh = row(page, "/demo/fresh")
    expect(fresh.locator(".v")).to_have_text("brand new", timeout=SHOW)
    expect(fresh).to_have_class(re.compile(r"(^|\s)flash(\s|$)"))
    expect(fresh.locator(".c-rev")).to_have_text(str(rev))

    node.put("/demo/greeting", "hello again")
    expect(row(page, "/demo/greeting").locator(".v")).to_have_text("hello again", timeout=SHOW)
    node.delete("/demo/fresh")
    expect(fresh).to_have_count(0, timeout=SHOW + 3_000)
    assert page.evaluate("window.__notReloaded") is True


def test_long_and_binary_values(node: Node, page: Any) -> None:
    """A long value is shortened with a way to see all of it; a value that is
    not UTF-8 is marked base64."""
    long_value = "0123456789" * 50
    node.put("/v/long", long_value)
    node.put("/v/binary", b"\xff\xfe\x00\x01")
    open_live(page, node.web_url + "/")
    long_row = row(page, "/v/long")
    assert len(long_row.locator(".v").inner_text()) < len(long_value)
    long_row.locator(".more").click()
    expect(page.locator("#detail-value")).to_have_text(long_value)
    expect(page.locator("#detail-meta")).to_contain_text("500 bytes")
    page.locator("#detail-close").click()
    expect(row(page, "/v/binary").locator(".badge")).to_have_text("base64")
    expect(row(page, "/v/binary").locator(".v")).to_have_text("//4AAQ==")
    row(page, "/v/binary").locator(".name").press("Enter")  # keyboard works too
    expect(page.locator("#detail-meta")).to_contain_text("base64")
    expect(page.locator("#detail-hex")).to_contain_text("ff fe 00 01")


def test_subtree(node: Node, page: Any) -> None:
    """/some/dir/ shows that subtree only, and stays current."""
    node.put("/app/config/port", "8080")
    node.put("/other/thing", "x")
    open_live(page, node.web_url + "/app/")
    expect(row(page, "/app/config/port").locator(".v")).to_have_text("8080")
    expect(row(page, "/other/thing")).to_have_count(0)
    expect(page.locator("#crumbs [aria-current]")).to_have_text("app/")
    node.put("/other/later", "y")
    node.put("/app/config/host", "example")
    expect(row(page, "/app/config/host").locator(".v")).to_have_text("example", timeout=SHOW)
    expect(row(page, "/other/later")).to_have_count(0)


def test_file_and_bad_paths(node: Node, page: Any) -> None:
    """/some/file shows that one file; a URL that is no store path says so."""
    node.put("/one/file", "only me")
    node.put("/one/other", "not me")
    open_live(page, node.web_url + "/one/file")
    expect(row(page, "/one/file").locator(".v")).to_have_text("only me")
    expect(row(page, "/one/other")).to_have_count(0)
    page.goto(node.web_url + "/bad%20path/")
    expect(page.locator("#status")).to_have_attribute("data-state", "error")
    expect(page.locator("#banner-text")).to_contain_text("not a valid store path")
    # /v1/... is the API; its subtree is reached with ?dir=
    node.put("/v1/x", "api-looking")
    open_live(page, node.web_url + "/?dir=/v1")
    expect(row(page, "/v1/x").locator(".v")).to_have_text("api-looking")


def test_disconnect_and_recover(node: Node, page: Any) -> None:
    """When the node goes away the page says so and retries; when it is back
    the page is live again and shows the node's store."""
    node.put("/before/restart", "old")
    open_live(page, node.web_url + "/")
    expect(row(page, "/before/restart")).to_have_count(1)
    node.stop()
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", "disconnected", timeout=SHOW)
    expect(status).to_have_text("disconnected, retrying")
    expect(page.locator("#banner")).to_be_visible()
    expect(page.locator("#banner-text")).to_contain_text("Retrying")
    node.start()
    expect(status).to_have_attribute("data-state", "live", timeout=RETRY + 10_000)
    expect(page.locator("#banner")).to_be_hidden()
    node.put("/after/restart", "new")
    expect(row(page, "/after/restart").locator(".v")).to_have_text("new", timeout=SHOW)
    # A restarted node is a new process with its own store: the page
    # reloaded the tree instead of keeping what it showed before.
    expect(row(page, "/before/restart")).to_have_count(0)


def count_requests(page: Any, part: str) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if part in r.url else None)
    return seen


def test_catch_up_after_lost_connection(node: Node, page: Any) -> None:
    """Changes made while the page could not reach the node show up once it
    can again: the watch resumes at its last rev, the tree is not reloaded."""
    open_live(page, node.web_url + "/")
    page.evaluate("window.__notReloaded = true")
    walks = count_requests(page, "/v1/walk")
    page.route("**/v1/watch*", lambda route: route.abort())
    node.put("/while/trigger", "ends the pending long-poll")
    expect(page.locator("#status")).to_have_attribute("data-state", "disconnected", timeout=SHOW)
    node.put("/while/away", "missed")
    page.unroute("**/v1/watch*")
    retry_now(page)
    expect(row(page, "/while/away").locator(".v")).to_have_text("missed", timeout=RETRY)
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    assert page.evaluate("window.__notReloaded") is True
    assert walks == []


def test_reload_when_too_late(start_node: Any, page: Any) -> None:
    """If the node's history no longer reaches back to the page's last rev
    (410 TOO_LATE), the page reloads the tree and says so."""
    node = start_node(args=("--hist", "10"))
    open_live(page, node.web_url + "/")
    page.evaluate("window.__notReloaded = true")
    page.route("**/v1/watch*", lambda route: route.abort())
    node.put("/late/trigger", "ends the pending long-poll")
    expect(page.locator("#status")).to_have_attribute("data-state", "disconnected", timeout=SHOW)
    for i in range(300):
        node.put(f"/late/f{i:03d}", str(i))
    page.unroute("**/v1/watch*")
    retry_now(page)
    expect(page.locator("#message")).to_contain_text("tree reloaded", timeout=RETRY)
    page.fill("#filter", "/late/f299")  # far below the rows in view
    expect(row(page, "/late/f299").locator(".v")).to_have_text("299")
    assert page.evaluate("window.__notReloaded") is True


def test_secret(start_node: Any, page: Any) -> None:
    """With a secret configured the page asks for it, refuses a wrong one,
    and keeps the right one for the session."""
    node = start_node(env={"DOOZER_RWSECRET": "s3cret"})
    node.put("/private/data", "hidden")
    page.goto(node.web_url + "/")
    expect(page.locator("#auth")).to_be_visible()
    expect(page.locator("#status")).to_have_attribute("data-state", "auth")
    page.fill("#secret", "wrong")
    page.click("#auth-submit")
    expect(page.locator("#auth-error")).to_be_visible()
    page.fill("#secret", "s3cret")
    page.click("#auth-submit")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    expect(row(page, "/private/data").locator(".v")).to_have_text("hidden")
    page.reload()
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    expect(page.locator("#auth")).to_be_hidden()
    node.put("/private/more", "also")
    expect(row(page, "/private/more").locator(".v")).to_have_text("also", timeout=SHOW)


def test_nothing_from_outside(node: Node, page: Any) -> None:
    """Everything the page loads comes from the node it was served by."""
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    open_live(page, node.web_url + "/")
    assert urls
    assert all(u.startswith(node.web_url + "/") or u.startswith("data:") for u in urls), urls


@pytest.mark.slow
def test_ten_thousand_files(node: Node, page: Any) -> None:
    """10,000 files load, stay usable (only the rows in view are in the
    page), scroll, filter and take live changes."""
    paths = [f"/bulk/d{i // 100:03d}/f{i % 100:03d}" for i in range(10_000)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: node.put(p, "v" + p), paths))
    open_live(page, node.web_url + "/")
    page.wait_for_function(
        "() => Number(document.getElementById('file-count').textContent) >= 10000", timeout=30_000
    )
    assert page.locator(".row").count() < 200
    # the page still answers (each expect waits at most its default 5 s)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    expect(row(page, paths[-1])).to_have_count(1)
    page.fill("#filter", "d042/f007")
    expect(row(page, "/bulk/d042/f007")).to_have_count(1)
    node.put("/bulk/d042/f007", "changed")
    expect(row(page, "/bulk/d042/f007").locator(".v")).to_have_text("changed", timeout=SHOW)
    page.fill("#filter", "")
    page.click("#collapse-all")
    # collapsed: one row per top-level directory (/bulk, /ctl)
    page.wait_for_function("() => document.querySelectorAll('.row').length <= 3")
