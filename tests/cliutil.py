"""The doozer command run as a subprocess against a real node (the
``node`` fixture of tests/client/conftest.py): the helpers of
tests/client/test_cli*.py."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOOZER = [sys.executable, "-m", "doozer.client.cli"]


def doozer(node: Any, *args: str, stdin: bytes = b"", uri: Optional[str] = None,
           env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run the doozer command against node (unless uri says otherwise)."""
    environ = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    environ.pop("DOOZER_URI", None)
    if env and "DOOZER_URI" in env:
        environ["DOOZER_URI"] = env["DOOZER_URI"]
        prefix: list[str] = []
    else:
        prefix = ["-a", uri or f"doozer:?ca={node.addr}"]
    return subprocess.run(DOOZER + prefix + list(args), input=stdin, capture_output=True,
                          env=environ, timeout=60)


def ok(result: subprocess.CompletedProcess) -> str:
    """The stdout of a run that must have succeeded silently on stderr."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    return result.stdout.decode()


def failed(result: subprocess.CompletedProcess, status: int) -> str:
    """The one stderr line of a run that must have failed with status."""
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doozer: "), lines
    assert "Traceback" not in result.stderr.decode()
    return lines[0]
