"""The WebView's script is ES modules (web/*.js) that the browser loads as
they are: index.html loads app.js with ``<script type="module">``, which
imports the others. In memory: every module is served as JavaScript (a
browser refuses a module script with another type), every import names a
module of the page and a name that module exports, and none of them reaches
outside the node. The page itself is exercised in tests/browser/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from doozer.server.http.webview import STATIC_PREFIX, WebView, load_static

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
ORIGIN = "http://127.0.0.1:8000"
MODULES = sorted(p.name for p in WEB_DIR.glob("*.js"))
IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"([^"]*)";', re.M)
EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function|class|const|let)\s+([\w$]+)", re.M)
_case = SynchronousTestCase()


def test_page_loads_app_js_as_a_module() -> None:
    """index.html has one script, app.js, loaded as a module (deferred by
    nature: it runs once the document is parsed)."""
    html = (WEB_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == [f'<script type="module" src="/{STATIC_PREFIX}/app.js">']


def test_every_module_is_installed() -> None:
    """load_static() (and so the package data) has every module."""
    assert "app.js" in MODULES and len(MODULES) > 1
    files = load_static()
    for name in MODULES:
        assert files[name] == (WEB_DIR / name).read_bytes(), name


@pytest.mark.parametrize("name", MODULES)
def test_modules_are_served_as_javascript(name: str) -> None:
    """Each module is served under /~static/ as text/javascript, unsniffed."""
    stub = StubTreq(WebView(Resource()).resource())
    response = _case.successResultOf(stub.get(f"{ORIGIN}/{STATIC_PREFIX}/{name}"))
    body = _case.successResultOf(response.content())
    assert response.code == 200
    assert body == (WEB_DIR / name).read_bytes()
    ctype = response.headers.getRawHeaders("content-type")[0]
    assert ctype.split(";")[0].strip() == "text/javascript"
    assert response.headers.getRawHeaders("x-content-type-options") == ["nosniff"]


@pytest.mark.parametrize("name", MODULES)
def test_imports_resolve_within_the_page(name: str) -> None:
    """Imports are relative (./x.js, so /~static/x.js), of a module of the
    page, of names it exports; nothing bare, absolute or dynamic."""
    text = (WEB_DIR / name).read_text()
    imports = IMPORT.findall(text)
    assert len(imports) == len(re.findall(r"^import\b", text, re.M)), "an import not of the form checked"
    assert "import(" not in text
    for names, spec in imports:
        assert re.fullmatch(r"\./[a-z]+\.js", spec), spec
        target = spec[2:]
        assert target in MODULES and target != name, spec
        exported = set(EXPORT.findall((WEB_DIR / target).read_text()))
        for imported in (n.strip() for n in names.split(",")):
            if imported:
                assert imported in exported, f"{name}: {target} does not export {imported}"


def test_app_js_reaches_every_module() -> None:
    """Every module in web/ is loaded (directly or not) from app.js."""
    seen, todo = set(), ["app.js"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [spec[2:] for _, spec in IMPORT.findall((WEB_DIR / name).read_text())]
    assert seen == set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_modules_need_nothing_from_outside(name: str) -> None:
    """No URL of another host in any module (as tests/server/test_web.py checks
    app.js)."""
    text = (WEB_DIR / name).read_text()
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), name
