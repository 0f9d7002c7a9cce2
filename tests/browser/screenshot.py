"""Take docs/webview.png (and docs/webview-history.png): the WebView of a
real node with some sample data and two leases.

Usage (from the repository root; needs Chromium at /usr/bin/chromium and
playwright, as the browser tests)::

    python tests/browser/screenshot.py docs/webview.png [--peers] [--history docs/webview-history.png]

With ``--peers`` it starts a three-member cluster instead of one node. The
first picture is the live view just after a few changes (highlighted as they
arrive); with ``--history`` the second is the history view of the same
store: the tree now, with the changes since the rev before them marked.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # procutil

from playwright.sync_api import sync_playwright  # noqa: E402
from procutil import cluster_key_file  # noqa: E402
from test_webview import CHROMIUM, CHROMIUM_ARGS, Node  # noqa: E402

CONFIG = {
    "listen": ":8080",
    "workers": 8,
    "upstreams": ["10.0.1.11:9000", "10.0.1.12:9000", "10.0.1.13:9000"],
    "timeouts": {"connect": "2s", "read": "30s"},
    "features": {"new-checkout": True, "dark-mode": False},
}

SAMPLE: dict[str, bytes | str] = {
    "/app/web/config.json": json.dumps(CONFIG),
    "/app/web/instances/web-1": "10.0.1.21:8080",
    "/app/web/instances/web-2": "10.0.1.22:8080",
    "/app/web/instances/web-3": "10.0.1.23:8080",
    "/app/db/primary": "10.0.2.5:5432",
    "/app/db/replicas/db-2": "10.0.2.6:5432",
    "/app/db/replicas/db-3": "10.0.2.7:5432",
    "/app/queue/brokers": "10.0.3.1:5672,10.0.3.2:5672",
    "/locks/billing-cron": "web-2 since 2026-11-25T17:40:02Z",
    "/locks/leader": "web-1",
    "/tls/ca.der": bytes.fromhex("308201a23082014aa003020102021400ff10c0de") + bytes(range(200, 256)),
    "/release/notes": "v2.4.1\n- faster checkout\n- fix: session expiry\n",
}


def main(out: str, peers: bool, history: str | None) -> None:
    work = Path(tempfile.mkdtemp())
    nodes = [Node(work, cluster="prod-east") for _ in range(3 if peers else 1)]
    if peers:
        addrs = ",".join(f"127.0.0.1:{n.listen}" for n in nodes)
        for n in nodes:
            n.args = ["--peers", addrs, "--cluster-key-file", cluster_key_file(work)]
    try:
        for n in nodes:
            n.start()
        node = nodes[0]
        deadline = time.monotonic() + 60
        while True:  # with --peers: until the cluster has formed
            try:
                node.put("/app/db/primary", "10.0.2.5:5432")
                members = node.request("GET", "/v1/cluster")["members"]
                if len(members) == len(nodes) and all(m["voting"] for m in members):
                    break
            except urllib.error.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the cluster did not form:\n" + node.log())
            time.sleep(0.5)
        for path, value in SAMPLE.items():
            node.put(path, value)
        leases = {}
        for ttl, paths in ((15, ["/locks/leader"]), (30, [f"/app/web/instances/web-{i}" for i in (1, 2, 3)])):
            lease = node.request("POST", "/v1/lease", json.dumps({"ttl": ttl}).encode())["id"]
            leases[lease] = paths
            for path in paths:
                node.request("PUT", f"/v1/store{path}?lease={lease}", str(SAMPLE[path]).encode())
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(node.web_url + "/")
            page.wait_for_selector('#status[data-state="live"]')
            page.wait_for_selector("#members tbody tr")
            page.wait_for_selector("#leases tr.lease")
            page.wait_for_selector('#ft[data-level="ok"]' if peers else "#ft:not([hidden])")
            time.sleep(2.5 if peers else 0.5)
            before = node.request("GET", "/v1/rev")["rev"]
            node.put("/app/web/instances/web-4", "10.0.1.24:8080")
            node.put("/app/web/config.json", json.dumps(dict(CONFIG, workers=16)))
            node.delete("/locks/billing-cron")
            node.request("PUT", f"/v1/store/locks/leader?lease={next(iter(leases))}", b"web-3")
            page.wait_for_selector('.row.flash[data-path="/locks/leader"]')
            time.sleep(0.35)  # mid-highlight
            page.screenshot(path=out)
            if history:
                time.sleep(3)  # the highlights are over
                page.fill("#since-rev", str(before))
                page.press("#since-rev", "Enter")
                page.wait_for_selector('#status[data-state="history"]')
                page.wait_for_selector('.row.diff-changed[data-path="/locks/leader"]')
                page.wait_for_function(
                    "() => /Live rev/.test(document.getElementById('hist-note').textContent)")
                # one more write: the live rev moves on, the view stays
                node.put("/app/queue/brokers", "10.0.3.1:5672,10.0.3.2:5672,10.0.3.3:5672")
                page.wait_for_function(
                    "r => Number(document.getElementById('store-rev').textContent) > r",
                    arg=before + 4)
                page.hover('.row[data-path="/app/web/config.json"] .name')
                page.screenshot(path=history)
            browser.close()
    finally:
        for n in nodes:
            n.stop()


if __name__ == "__main__":
    rest = sys.argv[2:]
    hist = rest[rest.index("--history") + 1] if "--history" in rest else None
    main(sys.argv[1], "--peers" in rest, hist)
