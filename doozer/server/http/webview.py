"""The WebView (SPEC §6): a single page that shows the store, live.

The page itself is static (``web/index.html``, ``web/app.js``,
``web/style.css``: plain JavaScript, no build step, nothing fetched from
outside the node). It reads the tree, the cluster and the changes through the
same origin's read API (``/v1/...``), which this resource delegates to the
API resource it is given. So the resource tree is::

    /                   the page (it reads ``location.pathname``)
    /some/dir/          the page again, showing that subtree
    /~static/<name>     the page's static files (``~`` is never in a store
                        path, so no store directory can shadow them)
    /v1/...             delegated, unchanged, to the API resource

Everything is served from memory: the static files are read once, when the
:class:`WebView` is built.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from pathlib import Path

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

__all__ = ["STATIC_PREFIX", "WebView", "load_static"]

#: First path segment of the static files' URLs.
STATIC_PREFIX = "~static"

#: Content types of the static files, by suffix; other files are not served.
CONTENT_TYPES: dict[str, bytes] = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}

#: The page may load nothing from anywhere but the node itself.
CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; "
    b"img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
    b"form-action 'none'; frame-ancestors 'none'"
)


def load_static() -> dict[str, bytes]:
    """Read the page's files: the ``doozer.web`` package when installed
    (``package_dir`` maps it to ``web/``), else ``web/`` next to the
    ``doozer`` package in a source checkout.

    :return: file name -> bytes, for every file with a suffix in
        :data:`CONTENT_TYPES`.
    """
    out: dict[str, bytes] = {}
    try:
        root = importlib.resources.files("doozer.web")
        entries = [e for e in root.iterdir() if e.is_file()]
    except (ImportError, TypeError, NotADirectoryError, FileNotFoundError):
        # Source checkout on PYTHONPATH: doozer.web is not a package there.
        entries = []
    if not any(e.name == "index.html" for e in entries):
        checkout = Path(__file__).resolve().parents[3] / "web"
        entries = [p for p in checkout.iterdir() if p.is_file()] if checkout.is_dir() else []
    for entry in entries:
        if Path(entry.name).suffix in CONTENT_TYPES:
            out[entry.name] = entry.read_bytes()
    if "index.html" not in out:
        raise FileNotFoundError("the WebView's index.html is not installed")
    return out


def _common_headers(request: IRequest, content_type: bytes) -> None:
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"cache-control", b"no-cache")
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")


def _plain_error(request: IRequest, status: int, text: str) -> bytes:
    request.setResponseCode(status)
    _common_headers(request, b"text/plain; charset=utf-8")
    return text.encode("utf-8") + b"\n"


def _method_ok(request: IRequest) -> bool:
    if request.method in (b"GET", b"HEAD"):
        return True
    request.setHeader(b"allow", b"GET, HEAD")
    return False


class _Page(Resource):
    """``index.html`` at ``/`` and at any other path outside ``/v1`` and
    ``/~static``: the page works out the subtree from its own URL."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self._body = body

    def render(self, request: IRequest) -> bytes:
        if not _method_ok(request):
            return _plain_error(request, 405, "method not allowed")
        _common_headers(request, CONTENT_TYPES[".html"])
        request.setHeader(b"content-security-policy", CSP)
        request.setHeader(b"x-frame-options", b"DENY")
        return self._body


class _Static(Resource):
    """``/~static/<name>``: one of the page's files, by exact name."""

    isLeaf = True

    def __init__(self, files: Mapping[str, bytes]) -> None:
        super().__init__()
        self._files = files

    def render(self, request: IRequest) -> bytes:
        if not _method_ok(request):
            return _plain_error(request, 405, "method not allowed")
        postpath = request.postpath or []
        name = postpath[0].decode("utf-8", "replace") if len(postpath) == 1 else ""
        body = self._files.get(name)
        if body is None:
            return _plain_error(request, 404, "no such file")
        _common_headers(request, CONTENT_TYPES[Path(name).suffix])
        return body


class _Root(Resource):
    """Dispatches on the first path segment (see the module docstring)."""

    def __init__(self, api: IResource, page: _Page, static: _Static) -> None:
        super().__init__()
        self._api = api
        self._page = page
        self._static = static

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        if name == b"v1":
            # Hand the API the whole path, /v1 included, as if it were the
            # site's root resource (Klein routes on prepath + postpath).
            prepath = request.prepath
            postpath = request.postpath
            assert prepath is not None and postpath is not None
            postpath.insert(0, prepath.pop())
            return self._api
        if name == STATIC_PREFIX.encode("ascii"):
            return self._static
        return self._page

    def render(self, request: IRequest) -> bytes:
        # Only reached for a request-target without a path (never from a
        # browser); show the page as for "/".
        return self._page.render(request)


class WebView:
    """The WebView of one node.

    :param api_resource: the read API (SPEC §3's GET endpoints), served at
        ``/v1/...`` unchanged, e.g. ``API(node, readonly=True).app.resource()``.
    :param static: file name -> bytes of the page's files; by default
        :func:`load_static` reads them from ``web/``.
    """

    def __init__(
        self,
        api_resource: IResource,
        *,
        static: Mapping[str, bytes] | None = None,
    ) -> None:
        self._api = api_resource
        self._static = dict(load_static() if static is None else static)
        if "index.html" not in self._static:
            raise ValueError("the WebView needs an index.html")

    def resource(self) -> IResource:
        """The resource to serve on the ``--web`` address."""
        return _Root(
            self._api,
            _Page(self._static["index.html"]),
            _Static(self._static),
        )
