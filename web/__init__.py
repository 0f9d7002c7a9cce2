"""The WebView's static files (index.html, app.js, style.css).

Installed as the package ``doozer.web`` (``package_dir`` in setup.cfg) so
that :func:`doozer.server.http.webview.load_static` reads them with
``importlib.resources``; in a source checkout it reads ``web/`` directly.
"""
