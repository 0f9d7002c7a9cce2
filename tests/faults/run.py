"""The fault suite on real clusters (issue 7): workers, a nemesis, the checkers.

Starts a 3- or 5-node cluster of real ``twistd -n doozer`` processes on
127.0.0.1, runs client workers against every node (set, CAS, delete,
``consistent=1`` reads, and long-running watch streams that resume from
``next``), while a seeded nemesis kills members (``-9``) and replaces them with
new nodes through the freed CAL slots, pauses them (SIGSTOP/SIGCONT), isolates
them (the TEST-ONLY transport hook of :mod:`doozer.consensus.faults`), makes
one member deaf to another that still hears it, briefly takes away the
majority, kills a second member just after a replacement claims its slot
(``claimkill``), and cuts a member off until it must install a snapshot
(``snapshot``). At the end it heals everything, lets the
cluster settle, dumps every live node's event log through the watch API and
runs :func:`tests.faults.checker.check_history` on the whole record.

With ``--data-dir`` (durable mode) every node keeps a data dir (SPEC §8),
and the nemesis also kills members and starts them again from their data
dirs: a minority (``restart``) or the whole cluster at once
(``wholerestart``). ``--lose-log`` is a self-test of the checkers, never a
normal run: each restart first deletes the node's log (what fsyncs that lied
would leave), and a run with ``--kinds wholerestart`` must then fail.

Lease holders (:mod:`tests.faults.leaseload`, ``--lease-holders``) contend
for an election key meanwhile; :mod:`tests.faults.leasecheck` judges them
(G1, G2, disjoint tenures) with the nemesis's fault windows.

With ``--fast`` the workload is :class:`tests.faults.fastload.FastWorkload`
(keep-alive connections, thousands of writes a second at ``--rate``) and the
node logs are followed during the run instead of dumped at the end.

This module is the run and its CLI; the parts it puts together are
:mod:`tests.faults.cluster` (the processes), :mod:`tests.faults.workload`
(the thread workers), :mod:`tests.faults.nemesis` (the faults) and
:mod:`tests.faults.checker`.

Usage::

    python -m tests.faults.run --nodes 3 --seconds 60 --seed 1 --out history.jsonl
    python -m tests.faults.run --nodes 3 --seconds 60 --seed 1 --fast
    python -m tests.faults.run --nodes 3 --seconds 60 --seed 1 --fast --data-dir

Exit status: 0 the checkers passed, 1 a violation, 2 unknown (search budget),
3 the run itself failed (e.g. the cluster never formed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from typing import Any, Optional

from tests.faults.checker import Verdict, check_history
from tests.faults.clients import CLIENT_TIMEOUT, http_call
from tests.faults.cluster import FAST_HIST, HIST, Cluster
from tests.faults.fastload import FastWorkload
from tests.faults.history import OK, WATCH, WRITES, Recorder
from tests.faults.leaseload import LeaseWorkload
from tests.faults.leaseops import LeaseLog
from tests.faults.nemesis import DURABLE_KINDS, FAULT_KINDS, RESTART_KINDS, Nemesis, check_kinds
from tests.faults.workload import WATCH_WAIT, Workload

#: Default target writes per second of ``--fast`` (0: unpaced, as fast as the
#: answers come), and clients per node.
FAST_RATE = 0
FAST_CLIENTS = 8
#: Lease holders contending for the election key (tests/faults/leaseload.py).
LEASE_HOLDERS = 4

def run(nodes: int = 3, seconds: float = 60, seed: int = 1, workers: int = 3, keys: int = 6,
        out: Optional[str] = None, workdir: Optional[str] = None, kinds: Optional[tuple] = None,
        quiet: bool = False, time_limit: float = 300, fast: bool = False, rate: float = FAST_RATE,
        clients: int = FAST_CLIENTS, lease_holders: int = LEASE_HOLDERS, durable: bool = False,
        lose_log: bool = False) -> dict:
    """One run; returns a summary dict (``ok``, ``verdict``, counts, report).

    ``kinds``: the fault kinds (default: :data:`FAULT_KINDS`, or
    :data:`DURABLE_KINDS` when ``durable``). ``durable``: every node with
    a data dir; the restart kinds need it (ValueError otherwise).
    ``lose_log``: a SELF-TEST of the checkers, never a normal run: every
    restart deletes the node's log segments first (keeping its identity and
    snapshots), so a whole-cluster restart loses acknowledged writes and the
    run must come out not ok.

    ``fast``: the keep-alive workload of :mod:`tests.faults.fastload` at
    ``rate`` writes a second (0: unpaced) with ``clients`` connections per
    node, instead of ``workers`` threads per node. ``lease_holders``: the
    lease holders of :mod:`tests.faults.leaseload` contending for
    ``/election/s<seed>/leader`` (0: none)."""
    if kinds is None:
        kinds = DURABLE_KINDS if durable else FAULT_KINDS
    check_kinds(kinds, durable)
    if lose_log and not durable:
        raise ValueError("lose_log (a self-test of the checkers) needs durable mode")
    lines: list[str] = []
    t_start = time.monotonic()

    def log(msg: str) -> None:
        line = f"[{time.monotonic() - t_start:7.2f}] {msg}"
        lines.append(line)
        if not quiet:
            print(line, flush=True)

    own_dir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="doozer-faults-")
    os.makedirs(workdir, exist_ok=True)
    cluster = Cluster(nodes, workdir, f"faults{seed}", log, hist=FAST_HIST if fast else HIST, durable=durable)
    rec = Recorder()
    lease_log = LeaseLog()  # time.monotonic, like the recorder
    result: dict = {"seed": seed, "nodes": nodes, "workdir": workdir, "fast": fast, "durable": durable,
                    "lose_log": lose_log}
    work: Any = None
    holders: Optional[LeaseWorkload] = None
    try:
        pace = f"{rate:g} writes/s" if rate else "unpaced"
        mode = f"fast workload ({pace}, {clients} clients per node)" if fast else f"{workers} workers per node"
        if durable:
            mode += ", nodes with data dirs"
        if lose_log:
            mode += ", CHECKER SELF-TEST: restarts lose the node's log, the run must fail"
        log(f"fault run: {nodes} nodes, {seconds} s, seed {seed}, {mode}, kinds {','.join(kinds)}, workdir {workdir}")
        cluster.start()
        log("cluster formed: " + ", ".join(n.addr for n in cluster.slots))
        start_rev = cluster.settle()
        prefix = f"/fault/s{seed}"
        if fast:
            work = FastWorkload(cluster, rec, seed, clients, keys, prefix, start_rev, rate, CLIENT_TIMEOUT, log=log)
        else:
            work = Workload(cluster, rec, seed, workers, keys, prefix, start_rev)
        nemesis = Nemesis(cluster, seed, log, kinds, path=os.path.join(workdir, "nemesis.jsonl"),
                          lose_log=lose_log)
        work.start()
        if lease_holders:
            holders = LeaseWorkload(cluster, rec, lease_log, seed, lease_holders,
                                    f"/election/s{seed}/leader", start_rev, http_call,
                                    calm=lambda: nemesis.calm)
            holders.start()
        t_work = time.monotonic()
        until = t_work + seconds
        nemesis.run(until)
        if not nemesis.unhealthy:
            time.sleep(max(0.0, until - time.monotonic()))
        log("stopping workers")
        if holders is not None:
            holders.stop.set()
        work.join(CLIENT_TIMEOUT + WATCH_WAIT + 5)
        if holders is not None:
            holders.join(CLIENT_TIMEOUT + WATCH_WAIT + 5)
        work_seconds = time.monotonic() - t_work
        cluster.heal()
        if not cluster.wait_healthy(90):
            log("cluster not healthy after the run")
            nemesis.unhealthy += 1
        try:
            end_rev = cluster.settle()
            ends = [end_rev] * nodes
        except RuntimeError:
            # Stuck (a liveness failure, reported above): check what each
            # node has applied, up to its own rev.
            log("cluster did not settle: dumping each node up to its own rev")
            ends = [http_call(n.addr, "GET", "/v1/rev", timeout=5)[1]["rev"] for n in cluster.slots]
            end_rev = max(ends)
        if fast:
            logs = work.logs({n.addr: e for n, e in zip(cluster.slots, ends)})
            log(f"followed {len(logs)} node logs ({sum(len(lg.events) for lg in logs)} events), "
                f"revs {start_rev + 1}..{end_rev}")
        else:
            logs = [cluster.dump_log(n, start_rev + 1, e) for n, e in zip(cluster.slots, ends)]
            log(f"dumped {len(logs)} node logs, revs {start_rev + 1}..{end_rev}")
        installs = cluster.snapshot_installs()
        restarts = {"restarted": cluster.restart_counts(), "reclaimed": sum(nemesis.restart_claims)}
        history = rec.history(logs=logs, start_rev=start_rev)
        history.leases = list(lease_log.ops)
        history.faults = nemesis.windows()
        if out:
            history.save(out)
        t_check = time.monotonic()
        report = check_history(history, time_limit=time_limit)
        check_seconds = time.monotonic() - t_check
        ops = Counter((op.kind, op.outcome) for op in history.ops)
        codes = Counter(f"{op.kind} {op.code or 'no answer'}" for op in history.ops
                        if op.outcome == "indeterminate")
        acked = sum(v for (k, o), v in ops.items() if k in WRITES and o == OK)
        # Acknowledged writes per second of the run (by completion time):
        # the median and the best second show the rate between faults.
        per_s = Counter(int(op.complete - t_work) for op in history.ops  # type: ignore[operator]
                        if op.kind in WRITES and op.outcome == OK and op.complete is not None)
        secs = sorted(per_s.get(i, 0) for i in range(max(1, int(work_seconds))))
        watch_calls = sum(v for (k, _o), v in ops.items() if k == WATCH)
        violations = sum(len(r.problems) for r in report.results if r.verdict is Verdict.FAIL)
        result.update(
            ok=report.ok,
            verdict=report.verdict.value,
            report=report.summary(),
            violations=violations,
            ops=dict(sorted((f"{k} {o}", v) for (k, o), v in ops.items())),
            ops_total=len(history.ops),
            client_ops=len(history.ops) - watch_calls,
            watch_calls=watch_calls,
            acked_writes=acked,
            work_seconds=round(work_seconds, 1),
            writes_per_s=round(acked / work_seconds, 1) if work_seconds > 0 else 0.0,
            writes_per_s_median=secs[len(secs) // 2],
            writes_per_s_best=secs[-1],
            indeterminate=dict(sorted(codes.items())),
            faults=dict(nemesis.counts),
            fault_log=nemesis.events,
            unhealthy=nemesis.unhealthy,
            snapshot_installs=installs,
            snapshot_faults=nemesis.snapshot_results,
            restarts=restarts,
            revs=end_rev - start_rev,
            node_logs=len(logs),
            check_seconds=round(check_seconds, 2),
            leases=next((r.info for r in report.results if r.name == "leases"), {}),
            seconds=round(time.monotonic() - t_start, 1),
        )
        log("ops by kind and outcome: " + json.dumps(result["ops"]))
        log("indeterminate by cause: " + json.dumps(result["indeterminate"]))
        log(f"ops checked: {len(history.ops)} ({result['client_ops']} client operations, "
            f"{watch_calls} watch calls); revs in the run: {end_rev - start_rev}; node logs: {len(logs)}")
        log(f"acknowledged writes: {acked} in {work_seconds:.1f} s, {result['writes_per_s']} writes/s "
            f"(per second: median {result['writes_per_s_median']}, best {result['writes_per_s_best']})")
        log("faults injected: " + json.dumps(result["faults"]) + f"; unhealthy after heal: {nemesis.unhealthy}")
        log(f"snapshot installs: {installs['total']} ({installs['catchups']} by nodes left behind, "
            f"{installs['joins']} joins of new nodes; counters.snapshot_installs of the live nodes: "
            f"{installs['counted']}); by the member of each snapshot fault: {nemesis.snapshot_results}")
        if durable:
            log(f"restarts from data dirs: {restarts['restarted']} (back after --timeout, the slot claimed "
                f"again before the cluster was healthy: {restarts['reclaimed']})")
        if result["leases"]:
            log("leases: " + json.dumps(result["leases"]))
        log(f"violations: {violations}")
        log(f"checker ({result['check_seconds']} s): " + report.summary())
        return result
    finally:
        if fast and work is not None:
            work.close()
        cluster.stop_all()
        with open(os.path.join(workdir, "run.log"), "w") as f:
            f.write("\n".join(lines) + "\n")
        if own_dir and result.get("ok"):
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workers", type=int, default=3, help="client workers per node")
    p.add_argument("--keys", type=int, default=6, help="keys per generation (20 s)")
    p.add_argument("--out", default=None, help="save the history as JSON lines")
    p.add_argument("--workdir", default=None, help="node directories (kept)")
    p.add_argument("--time-limit", type=float, default=600, help="checker search budget, seconds")
    p.add_argument("--kinds", default=None,
                   help=f"fault kinds, comma-separated (default: all of {','.join(FAULT_KINDS)}; "
                        f"with --data-dir also {','.join(RESTART_KINDS)})")
    p.add_argument("--data-dir", action="store_true",
                   help="durable mode: every node with a data dir (in its work dir); "
                        f"adds the kinds {','.join(RESTART_KINDS)}")
    p.add_argument("--lose-log", action="store_true",
                   help="SELF-TEST of the checkers, never a normal run: each restart deletes the node's "
                        "log first; with --data-dir --kinds wholerestart the run must fail")
    p.add_argument("--fast", action="store_true",
                   help="keep-alive workload at --rate writes/s (mostly blind writes to per-client keys)")
    p.add_argument("--rate", type=float, default=None,
                   help=f"target writes per second of --fast (implies it; default {FAST_RATE}; 0: unpaced)")
    p.add_argument("--clients", type=int, default=FAST_CLIENTS,
                   help=f"--fast: connections per node (default {FAST_CLIENTS})")
    p.add_argument("--lease-holders", type=int, default=LEASE_HOLDERS,
                   help=f"lease holders contending for the election key (default {LEASE_HOLDERS}; 0: none)")
    args = p.parse_args(argv)
    fast = args.fast or args.rate is not None
    rate = FAST_RATE if args.rate is None else args.rate
    kinds = None if args.kinds is None else tuple(k for k in args.kinds.split(",") if k)
    try:
        if kinds is not None:
            check_kinds(kinds, args.data_dir)
    except ValueError as e:
        p.error(str(e))
    if args.lose_log and not args.data_dir:
        p.error("--lose-log (a self-test of the checkers) needs --data-dir")

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # runs the cleanup: every node is killed

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # a background job may have inherited SIG_IGN
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    try:
        res = run(args.nodes, args.seconds, seed, args.workers, args.keys, args.out, args.workdir,
                  kinds=kinds, time_limit=args.time_limit, fast=fast, rate=rate, clients=args.clients,
                  lease_holders=args.lease_holders, durable=args.data_dir, lose_log=args.lose_log)
    except RuntimeError as e:
        print(f"run failed (seed {seed}): {e}", file=sys.stderr)
        return 3
    print(json.dumps({k: v for k, v in res.items() if k not in ("report", "fault_log")}, indent=1))
    return {"ok": 0, "fail": 1}.get(res["verdict"], 2)


if __name__ == "__main__":
    sys.exit(main())
