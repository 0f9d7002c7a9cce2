"""tests/procutil.py: node processes a test forgot to stop die with pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from procutil import ROOT


def test_a_node_left_running_is_killed_when_the_test_process_exits(tmp_path: Any) -> None:
    """A test that fails before stopping its node (seen: two nodes still
    holding their ports an hour after the run) leaves no process behind."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from procutil import NodeProcess\n"
        "n = NodeProcess(sys.argv[2]).start()\n"
        "print(n.proc.pid, flush=True)\n"
        # exits without n.stop(), as a failed assertion would
    )
    out = subprocess.run(
        [sys.executable, "-c", script, os.path.join(ROOT, "tests"), str(tmp_path / "n")],
        capture_output=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT), check=True,
    )
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break  # a zombie of the exited parent: dead already
        time.sleep(0.05)
    alive = os.path.exists(f"/proc/{pid}")
    if alive:
        with open(f"/proc/{pid}/stat") as f:
            alive = f.read().rsplit(")", 1)[1].split()[0] != "Z"
    assert not alive, f"node {pid} outlived the process that started it"
