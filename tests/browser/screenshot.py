"""Take docs/webview.png: the WebView of a real node with some sample data.

Usage (from the repository root; needs Chromium at /usr/bin/chromium and
playwright, as the browser tests)::

    python tests/browser/screenshot.py docs/webview.png [--peers]

With ``--peers`` it starts a three-member cluster instead of one node.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from playwright.sync_api import sync_playwright  # noqa: E402
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


def main(out: str, peers: bool) -> None:
    work = Path(tempfile.mkdtemp())
    nodes = [Node(work, cluster="prod-east") for _ in range(3 if peers else 1)]
    if peers:
        addrs = ",".join(f"127.0.0.1:{n.listen}" for n in nodes)
        for n in nodes:
            n.args = ["--peers", addrs]
    try:
        for n in nodes:
            n.start()
        node = nodes[0]
        deadline = time.monotonic() + 60
        while True:  # with --peers: until the cluster has formed
            try:
                node.put("/app/db/primary", "10.0.2.5:5432")
                members = node.request("GET", "/v1/cluster")["members"]
                if len(members) == len(nodes):
                    break
            except urllib.error.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the cluster did not form:\n" + node.log())
            time.sleep(0.5)
        for path, value in SAMPLE.items():
            node.put(path, value)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.goto(node.web_url + "/")
            page.wait_for_selector('#status[data-state="live"]')
            page.wait_for_selector("#members tbody tr")
            time.sleep(2.5 if peers else 0.5)
            node.put("/app/web/instances/web-4", "10.0.1.24:8080")
            node.put("/locks/leader", "web-3")
            page.wait_for_selector('.row.flash[data-path="/locks/leader"]')
            time.sleep(0.35)  # mid-highlight
            page.screenshot(path=out)
            browser.close()
    finally:
        for n in nodes:
            n.stop()


if __name__ == "__main__":
    main(sys.argv[1], "--peers" in sys.argv[2:])
