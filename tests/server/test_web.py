"""The WebView resource (doozer/server/http/webview.py): the page at any store path, its
static files, and /v1 handed to the API resource unchanged. In memory, with
StubTreq; the page itself is exercised in tests/browser/."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from klein import Klein
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest

from doozer.server.http.webview import CONTENT_TYPES, STATIC_PREFIX, WebView, load_static

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
ORIGIN = "http://127.0.0.1:8000"
_case = SynchronousTestCase()


class FakeAPI:
    """Stands in for the read API: echoes the path Klein routed on."""

    app = Klein()

    @app.route("/v1/rev")
    def rev(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-doozer-rev", b"7")
        return b'{"rev": 7}'

    @app.route("/v1/store/", branch=True)
    def store(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"path": request.path.decode(), "method": request.method.decode()}).encode()


def fetch(stub: StubTreq, path: str, method: str = "GET") -> tuple[int, Any, bytes]:
    response = _case.successResultOf(stub.request(method, ORIGIN + path))
    body = _case.successResultOf(response.content())
    return response.code, response.headers, body


def header(headers: Any, name: str) -> str:
    values = headers.getRawHeaders(name)
    assert values, f"no {name} header"
    return values[0]


@pytest.fixture
def stub() -> StubTreq:
    return StubTreq(WebView(FakeAPI().app.resource()).resource())


def test_root_is_the_page(stub: StubTreq) -> None:
    """GET / answers index.html as HTML, with a policy that forbids loading
    anything from outside the node."""
    code, headers, body = fetch(stub, "/")
    assert code == 200
    assert header(headers, "content-type") == "text/html; charset=utf-8"
    assert body == (WEB_DIR / "index.html").read_bytes()
    csp = header(headers, "content-security-policy")
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert header(headers, "x-content-type-options") == "nosniff"


@pytest.mark.parametrize(
    "path", ["/some/dir/", "/some/dir", "/a/b/c/d/e/", "/ctl/", "/_static/x", "/favicon.ico"]
)
def test_any_other_path_is_the_page(stub: StubTreq, path: str) -> None:
    """Every path outside /v1 and /~static serves the same page, which shows
    the subtree named by its own URL."""
    code, headers, body = fetch(stub, path)
    assert code == 200
    assert body == (WEB_DIR / "index.html").read_bytes()


@pytest.mark.parametrize("name", ["app.js", "style.css", "index.html"])
def test_static_files(stub: StubTreq, name: str) -> None:
    """The page's files are served from web/ under /~static/ with their type."""
    code, headers, body = fetch(stub, f"/{STATIC_PREFIX}/{name}")
    assert code == 200
    assert body == (WEB_DIR / name).read_bytes()
    assert header(headers, "content-type") == CONTENT_TYPES[Path(name).suffix].decode()
    assert header(headers, "cache-control") == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        f"/{STATIC_PREFIX}/nope.js",
        f"/{STATIC_PREFIX}/__init__.py",
        f"/{STATIC_PREFIX}/",
        f"/{STATIC_PREFIX}",
        f"/{STATIC_PREFIX}/sub/app.js",
        f"/{STATIC_PREFIX}/..%2f..%2fsetup.cfg",
    ],
)
def test_unknown_static_file_is_404(stub: StubTreq, path: str) -> None:
    """Only the page's own files are served: no listing, no other file."""
    code, headers, body = fetch(stub, path)
    assert code == 404
    assert header(headers, "content-type").startswith("text/plain")


def test_api_gets_the_whole_path(stub: StubTreq) -> None:
    """/v1/... reaches the API resource with /v1 still in the path, as if it
    were the site's root."""
    code, headers, body = fetch(stub, "/v1/rev")
    assert (code, json.loads(body)) == (200, {"rev": 7})
    assert header(headers, "x-doozer-rev") == "7"
    code, _, body = fetch(stub, "/v1/store/a/b")
    assert json.loads(body) == {"path": "/v1/store/a/b", "method": "GET"}


def test_api_decides_its_own_methods(stub: StubTreq) -> None:
    """Methods on /v1 are the API's business (the WebView does not filter)."""
    code, _, body = fetch(stub, "/v1/store/a", method="PUT")
    assert json.loads(body)["method"] == "PUT"


@pytest.mark.parametrize("path", ["/", "/some/dir/", f"/{STATIC_PREFIX}/app.js"])
def test_page_is_read_only(stub: StubTreq, path: str) -> None:
    """The page and its files answer GET and HEAD only."""
    code, headers, _ = fetch(stub, path, method="POST")
    assert code == 405
    assert header(headers, "allow") == "GET, HEAD"
    code, _, body = fetch(stub, path, method="HEAD")
    assert (code, body) == (200, b"")


def test_static_can_be_injected() -> None:
    """WebView(static=...) serves the given files instead of web/."""
    view = WebView(FakeAPI().app.resource(), static={"index.html": b"<p>hi</p>", "x.css": b"p{}"})
    stub = StubTreq(view.resource())
    assert fetch(stub, "/deep/dir/")[2] == b"<p>hi</p>"
    assert fetch(stub, f"/{STATIC_PREFIX}/x.css")[2] == b"p{}"


def test_index_is_required() -> None:
    """A WebView without an index.html is a mistake caught at once."""
    with pytest.raises(ValueError):
        WebView(FakeAPI().app.resource(), static={"app.js": b""})


def test_load_static_reads_web_dir() -> None:
    """load_static() finds the page's files (here: in the source checkout)."""
    files = load_static()
    for name in ("index.html", "app.js", "style.css"):
        assert files[name] == (WEB_DIR / name).read_bytes()
    assert "__init__.py" not in files


def test_page_needs_nothing_from_outside() -> None:
    """No CDN, no external fonts: every URL in the page's files is local."""
    html = (WEB_DIR / "index.html").read_text()
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(f"/{STATIC_PREFIX}/") or url.startswith("data:"), url
    names = ["index.html", "style.css"] + sorted(p.name for p in WEB_DIR.glob("*.js"))
    assert "app.js" in names and "history.js" in names
    for name in names:
        text = (WEB_DIR / name).read_text()
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), name
        assert "@import" not in text and "@font-face" not in text


# ----------------------------------------------------------------------
# with the node's real read-only API behind it (as doozer/server/service.py does)


def real_stub(**secrets: bytes) -> StubTreq:
    from twisted.internet.task import Clock

    from doozer.server.http.api import API
    from doozer.server.auth import Secrets
    from doozer.testing import single_node

    node = single_node(Clock())
    api = API(node, secrets=Secrets(secrets.get("rw"), secrets.get("ro")), readonly=True)
    return StubTreq(WebView(api.resource()).resource())


def test_real_api_reads() -> None:
    """The node's read API answers under /v1 on the WebView address."""
    stub = real_stub()
    code, headers, body = fetch(stub, "/v1/rev")
    assert code == 200
    assert json.loads(body)["rev"] >= 1
    assert int(header(headers, "x-doozer-rev")) >= 1
    code, _, body = fetch(stub, "/v1/walk?glob=/ctl/name")
    assert code == 200 and json.loads(body)["files"][0]["path"] == "/ctl/name"


def test_real_api_refuses_writes() -> None:
    """The WebView address takes no writes."""
    code, _, body = fetch(real_stub(), "/v1/store/x", method="PUT")
    assert (code, json.loads(body)["error"]) == (405, "METHOD_NOT_ALLOWED")


def test_page_loads_without_the_secret() -> None:
    """With a secret, the API wants it but the page and its files do not
    (the page has to load to ask for it)."""
    stub = real_stub(rw=b"rw-secret", ro=b"ro-secret")
    assert fetch(stub, "/")[0] == 200
    assert fetch(stub, f"/{STATIC_PREFIX}/app.js")[0] == 200
    code, _, body = fetch(stub, "/v1/rev")
    assert (code, json.loads(body)["error"]) == (401, "UNAUTHORIZED")
    response = _case.successResultOf(
        stub.get(ORIGIN + "/v1/rev", headers={"Authorization": "Bearer ro-secret"})
    )
    assert response.code == 200


def test_health_and_history_reads_on_the_webview_address() -> None:
    """What the page's health panel and history read is served on the
    WebView address: /v1/cluster (voting, applied, fault_tolerance),
    /v1/leases, and reads at ?rev= (410 TOO_LATE with the oldest rev once the
    rev left the history window); revoking a lease there is refused."""
    from apiutil import Harness

    from doozer.server.http.api import API

    h = Harness(hist=5)
    web = StubTreq(WebView(API(h.node, readonly=True).resource()).resource())

    def get(path: str) -> tuple[int, Any]:
        code, _, body = fetch(web, path)
        return code, json.loads(body)

    code, cluster = get("/v1/cluster")
    assert code == 200
    (member,) = cluster["members"]
    assert member["voting"] is True and member["applied"] == cluster["rev"]
    assert cluster["fault_tolerance"] == 0  # one voter: it may not fail

    lease = h.call("POST", "/v1/lease", json.dumps({"ttl": 30}).encode()).json["id"]
    assert h.put("/svc/leader", b"me", lease=lease).code == 200
    assert get("/v1/leases") == (200, {"leases": [{"id": lease, "ttl": 30, "files": ["/svc/leader"]}]})
    code, _, body = fetch(web, f"/v1/lease/{lease}", method="DELETE")
    assert (code, json.loads(body)["error"]) == (405, "METHOD_NOT_ALLOWED")

    for i in range(30):
        h.put("/h", str(i).encode())
    code, late = get("/v1/stat/?rev=1")
    assert (code, late["error"]) == (410, "TOO_LATE")
    assert late["oldest"] > 1
    code, walked = get(f"/v1/walk?glob=/**&rev={late['oldest']}")
    assert code == 200 and walked["rev"] == late["oldest"]
