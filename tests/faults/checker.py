"""Checkers for the fault suite: linearizability, node logs, watch streams.

They judge a recorded :class:`~tests.faults.history.History` and need no
running cluster.  Each returns a :class:`~tests.faults.results.CheckResult`
with a :class:`~tests.faults.results.Verdict` (``ok`` / ``fail`` /
``unknown``) and human-readable problems; :func:`check_history` (here) runs
all that apply, and ``python -m tests.faults.checker HISTORY.jsonl`` runs it
on a saved history.  Each checker lives in a module of its own:
:mod:`tests.faults.lincheck` (with its model, :mod:`tests.faults.linmodel`),
:mod:`tests.faults.logcheck`, :mod:`tests.faults.watchcheck`, and for
leases :mod:`tests.faults.leasecheck`.

Linearizability (:func:`check_linearizability`)
    Per key, a Wing–Gong/Lowe depth-first search for a linearization of the
    key's operations against a register-with-CAS model, anchored on the revs
    the server returned; cross-key rules (global revs unique, and
    increasing in real time) checked apart.

Logs (:func:`check_logs`)
    Every pair of node logs agrees on the revs both cover; every acknowledged
    write is at its acknowledged rev, with its value, in every log covering
    that rev; every change in the logs to a key the history wrote is a write
    somebody issued; every read's (value, file rev) is what the log has at
    that rev.

Watches (:func:`check_watches`)
    Every watch stream (the calls of one client resuming from ``next``) is
    strictly ordered, without duplicates, and equals the common log filtered
    by its glob between its first requested rev and its last ``next``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from .history import WATCH, History
from .leasecheck import check_leases
from .lincheck import check_linearizability
from .logcheck import CommonLog, check_logs
from .results import CheckResult, Report, Verdict
from .watchcheck import check_watches, compile_glob

__all__ = ["CheckResult", "CommonLog", "Report", "Verdict", "check_history", "check_linearizability",
           "check_logs", "check_watches", "compile_glob", "main"]


def check_history(history: History, **lin_options: Any) -> Report:
    """Run every check that applies to ``history``: linearizability always,
    logs when node logs were dumped, watches when watch calls were recorded,
    leases (:mod:`tests.faults.leasecheck`) when lease holders ran.
    ``lin_options`` go to :func:`check_linearizability`."""
    results = [check_linearizability(history.ops, initial=history.initial, **lin_options)]
    common = None
    if history.logs:
        logs = check_logs(history.logs, history.ops, history.start_rev)
        common = logs.info["common"]
        results.append(logs)
    if any(o.kind == WATCH for o in history.ops):
        results.append(check_watches(history.ops, common))
    if history.leases:
        results.append(check_leases(history, common))
    return Report(results)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.faults.checker HISTORY.jsonl``: exit 0 ok, 1 fail,
    2 unknown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("history", help="JSON-lines history written by History.save")
    parser.add_argument("--max-steps", type=int, default=2_000_000)
    parser.add_argument("--time-limit", type=float, default=300.0)
    args = parser.parse_args(argv)
    report = check_history(History.load(args.history), max_steps=args.max_steps, time_limit=args.time_limit)
    print(report.summary())
    return {Verdict.OK: 0, Verdict.FAIL: 1, Verdict.UNKNOWN: 2}[report.verdict]


if __name__ == "__main__":
    sys.exit(main())
