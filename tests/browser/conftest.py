"""The browser tests' fixtures (tests/browser/test_webview*.py): real nodes,
one headless Chromium for the whole session, a fresh context per test.

Playwright and the node helper are imported when a fixture is first used:
without playwright the test modules skip themselves (test_webview.py) and
nothing here is reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Any]:
    """Start nodes (test_webview.Node); every one is stopped after the test."""
    from test_webview import Node

    nodes: list[Node] = []

    def start(**kwargs: Any) -> Node:
        node = Node(tmp_path, **kwargs)
        nodes.append(node)
        node.start()
        return node

    yield start
    for node in nodes:
        node.stop()


@pytest.fixture
def node(start_node: Any) -> Any:
    return start_node()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium for every browser test (each test has its own context:
    see ``page``)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from test_webview import CHROMIUM, CHROMIUM_ARGS

    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (own sessionStorage) whose page errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"
