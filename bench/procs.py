"""Start and stop the servers a benchmark measures (real processes, loopback only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests' process helpers (free ports, twistd's entry point) serve here too.
sys.path.insert(0, os.path.join(ROOT, "tests"))
from procutil import TWISTD, free_port  # noqa: E402


def wait_http(url: str, seconds: float = 20.0) -> None:
    """Poll ``url`` until it answers (the process has started)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            time.sleep(0.1)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@contextmanager
def doozer_node(*args: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """A one-member node in its own process; yields (port, process)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "doozer",
             "--listen", f"127.0.0.1:{port}", "--web", "false", *args],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/v1/rev")
            yield port, proc
        finally:
            proc.terminate()
            proc.wait(10)


@contextmanager
def bare_klein() -> Iterator[tuple[int, subprocess.Popen]]:
    """The reference: a bare Klein JSON handler, no access log."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bench", "bare_klein.py"), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/store/message")
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(10)


def put(port: int, path: str, body: bytes) -> dict:
    """One write through the HTTP API."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/store{path}", data=body, method="PUT"
    )
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def rev(port: int) -> int:
    """The node's current rev."""
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/rev", timeout=10).read())["rev"]
