"""Writes per second while a member is dead but still holds its CAL slot.

Until the others remove it (``--timeout``, a minute by default) a dead
member owns every n-th instance of the log, and each must be revoked. This
runs the node simulation (``tests/nodesim.py``: real nodes, simulated
network and clocks, so the figure is simulated time, not CPU) with 8
closed-loop writers per live node, healthy and then with one of three
members killed, and prints writes committed per simulated second::

    python bench/dead_member.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import nodesim  # noqa: E402


def main() -> None:
    for kill in (False, True):
        figures = [nodesim.write_rate(seed, kill) for seed in range(3)]
        label = "one of 3 members dead" if kill else "healthy"
        print(f"{label:<24} " + "  ".join(f"{f:7.0f}" for f in figures) + "  writes/s (simulated), seeds 0-2")


if __name__ == "__main__":
    main()
