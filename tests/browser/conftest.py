"""The browser tests' fixtures (a node, a browser, a tab), defined in
test_webview.py and shared here with the other WebView test modules."""

import pytest

try:
    from test_webview import browser, node, page, start_node
except pytest.skip.Exception:
    # No playwright: test_webview.py (and every module importing it) skips.
    pass

__all__ = ["browser", "node", "page", "start_node"]
