"""The package as a user installs it: ``pip install .`` into a fresh venv.

A copy of the working tree (uncommitted files included, build and venv
directories left out) is installed, not editable, into a new virtualenv;
then that venv's ``twistd`` must find the plugin and list every SPEC §5
option, a node started from it must serve the API and the WebView, and its
``doozer`` command must read what was written. Nothing from the checkout
is on the node's ``sys.path``: it runs in an empty directory without
``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from procutil import ROOT, free_port

pytestmark = pytest.mark.slow

#: SPEC §5: every option of ``twistd doozer``.
SPEC_OPTIONS = [
    "--listen", "--web", "--peers", "--cluster", "--timeout", "--fill", "--hist",
    "--pulse", "--max-value", "--rw-secret-file", "--ro-secret-file", "--tls-cert",
    "--tls-key", "--cluster-key-file",
]

#: Not part of the source tree a user would install.
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
    ".hypothesis", ".mypy_cache", ".pytest_cache", "dropin.cache", "_trial_temp",
    "twistd.pid", "twistd.log",
)


def _env() -> dict[str, str]:
    """The environment without anything pointing back at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(cwd: Path, *argv: str, timeout: float = 60) -> str:
    done = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the working tree pip-installed (not editable); its bin/."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    venv = base / "venv"
    _run(base, sys.executable, "-m", "venv", str(venv), timeout=120)
    bin_dir = venv / "bin"
    # pip's cache makes this quick after the first time; the first install
    # on a clean machine downloads Twisted and friends.
    _run(base, str(bin_dir / "python"), "-m", "pip", "install", "-q", str(source),
         timeout=600)
    return bin_dir


def test_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    """The venv imports doozer from its own site-packages."""
    where = _run(tmp_path, str(installed / "python"), "-c",
                 "import doozer, doozer.web; print(doozer.__file__)").strip()
    assert where.startswith(str(installed.parent)), where
    assert not where.startswith(ROOT)


def test_twistd_lists_the_plugin_and_every_option(installed: Path, tmp_path: Path) -> None:
    """``twistd --help`` names doozer; ``twistd doozer --help`` every SPEC §5 option."""
    assert "doozer" in _run(tmp_path, str(installed / "twistd"), "--help").split()
    help_text = _run(tmp_path, str(installed / "twistd"), "doozer", "--help")
    missing = [o for o in SPEC_OPTIONS if o not in help_text]
    assert not missing, f"twistd doozer --help lacks {missing}:\n{help_text}"


def test_installed_node_serves_api_webview_and_cli(installed: Path, tmp_path: Path) -> None:
    """A node started from the venv answers HTTP and the WebView; its CLI reads."""
    port, web = free_port(), free_port()
    while web == port:
        web = free_port()
    api = f"http://127.0.0.1:{port}"
    with open(tmp_path / "node.log", "wb") as log:
        proc = subprocess.Popen(
            [str(installed / "twistd"), "-n", "--pidfile=", "doozer",
             "--listen", f"127.0.0.1:{port}", "--web", f"127.0.0.1:{web}"],
            cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "node.log").read_text()
            try:
                if _http("GET", f"{api}/v1/rev")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "node.log").read_text()
            time.sleep(0.1)

        status, body = _http("PUT", f"{api}/v1/store/packaging/message", b"hello, world")
        assert status == 200, body
        status, body = _http("GET", f"{api}/v1/store/packaging/message")
        assert status == 200 and b'"value":"hello, world"' in body, body

        status, page = _http("GET", f"http://127.0.0.1:{web}/")
        assert status == 200
        assert b"<title>doozer</title>" in page

        out = _run(tmp_path, str(installed / "doozer"), "-a", api, "get", "/packaging/message",
                   timeout=30)
        assert out.rstrip("\n") == "hello, world"
    finally:
        proc.kill()
        proc.wait(10)
