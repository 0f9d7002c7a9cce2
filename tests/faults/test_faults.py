"""The fault suite on real clusters, short enough for CI (issue 7).

Three runs of 62-70 s each, with lease holders contending for an election key
(tests/faults/leaseload.py), then the checkers on the whole record:

- 3 nodes with the fast workload (``--fast``: keep-alive clients, thousands
  of writes a second, node logs followed during the run) and every fault
  kind: kill -9 and replacement, SIGSTOP/SIGCONT, partition, short loss of
  the majority, one-way loss, a second kill as soon as a replacement has
  claimed its slot (``claimkill``), and a member cut off until it must
  install a snapshot (``snapshot``);
- 5 nodes with the thread workers and every kind but ``snapshot`` (seven
  kinds do not fit in 70 s; the 3-node run has it);
- 3 nodes with data dirs (durable mode, ``--data-dir``), the fast workload
  and every kind but ``snapshot`` (eight kinds with it do not fit: its cut
  alone lasts about 30 s; the first run has it), including ``restart``
  (kill -9 a member and start it again from its data dir) and
  ``wholerestart`` (every member at once): each restarted node comes back
  from its data dir, and every acknowledged write is still there. Its seed
  is one whose schedule fits the eight kinds in 62 s.

And the checkers' self-test (``lose_log``, about 25 s): a durable cluster
whose whole-cluster restarts each delete the nodes' logs first must be
found out.

The soak is the same runner for longer: see docs/testing.md.

Seeds are fixed so that a failure can be re-run (the nemesis schedule is
seeded; the timing of the processes is not, so a re-run is similar, not
identical). The history and the node logs of a failing run are kept in the
test's tmp_path.
"""

from __future__ import annotations

import pytest

from tests.faults.nemesis import DURABLE_KINDS
from tests.faults.run import FAULT_KINDS, run

pytestmark = [pytest.mark.slow, pytest.mark.faults]

ALL_BUT_SNAPSHOT = tuple(k for k in FAULT_KINDS if k != "snapshot")
#: Eight kinds (DURABLE_KINDS but snapshot): seed 7264's schedule fits them.
DURABLE_SECONDS = 62
DURABLE_BUT_SNAPSHOT = tuple(k for k in DURABLE_KINDS if k != "snapshot")


@pytest.mark.parametrize(
    "nodes, seconds, seed, fast, kinds, durable",
    [(3, 70, 7001, True, FAULT_KINDS, False), (5, 70, 7002, False, ALL_BUT_SNAPSHOT, False),
     (3, DURABLE_SECONDS, 7264, True, DURABLE_BUT_SNAPSHOT, True)],
    ids=["3-nodes-fast-70s", "5-nodes-70s", f"3-nodes-durable-{DURABLE_SECONDS}s"],
)
def test_fault_run_is_consistent(tmp_path, nodes: int, seconds: int, seed: int, fast: bool, kinds: tuple,
                                 durable: bool) -> None:
    res = run(
        nodes=nodes,
        seconds=seconds,
        seed=seed,
        workers=3,
        out=str(tmp_path / "history.jsonl"),
        workdir=str(tmp_path / "nodes"),
        kinds=kinds,
        quiet=True,
        time_limit=120,
        fast=fast,
        rate=0,
        durable=durable,
    )
    where = f"seed {seed}, history {tmp_path / 'history.jsonl'}, node logs {tmp_path / 'nodes'}"
    assert res["ok"], f"{where}\n{res['report']}"
    assert res["violations"] == 0
    assert res["unhealthy"] == 0, f"the cluster did not recover after a fault ({where}): {res['fault_log'][-3:]}"
    for kind in kinds:
        assert res["faults"].get(kind, 0) >= 1, f"no {kind} fault injected ({where}): {res['faults']}"
    # The record is not trivial: writes were acknowledged, some ended
    # indeterminate (faults bit), and watch streams delivered.
    assert res["ops"].get("set ok", 0) > 50 and res["ops"].get("read ok", 0) > 50
    assert res["ops"].get("watch ok", 0) > 10
    # The lease holders ran: leases were granted, taken as the election
    # key, renewed, and some ended by expiry with a watcher or holder
    # seeing it, so that G1 was judged on real ends.
    leases = res["leases"]
    assert leases["granted"] > 5 and leases["takeovers_ok"] >= 1, f"{leases} ({where})"
    assert leases["expired"] >= 1 and leases["g1_checked"] >= 1, f"{leases} ({where})"
    if durable:
        # Every node started again came back from its data dir (its log
        # says "restarts in cluster"), not as a new node.
        restarted = sum(1 for e in res["fault_log"] if e["fault"] == "restarted")
        assert restarted >= res["faults"]["restart"] + nodes * res["faults"]["wholerestart"]
        assert res["restarts"]["restarted"] == restarted, f"{res['restarts']} ({where})"
    if fast:
        # Far beyond the thread workers (about 140 revs/s), even with a
        # fault most of the time.
        assert res["writes_per_s"] > 500, f"{res['writes_per_s']} writes/s ({where})"


def test_the_checkers_find_the_writes_a_lost_log_loses(tmp_path) -> None:
    """Self-test of the checkers: whole-cluster restarts from data dirs
    whose log segments were deleted (identity and snapshots kept: what
    fsyncs that lied would leave) bring the nodes back at their snapshots,
    and the revs after them are given to new writes. The run must not pass,
    and the log checker must be among those that say so."""
    res = run(nodes=3, seconds=12, seed=7004, out=str(tmp_path / "history.jsonl"),
              workdir=str(tmp_path / "nodes"), kinds=("wholerestart",), quiet=True, time_limit=60,
              fast=True, rate=0, lease_holders=0, durable=True, lose_log=True)
    assert res["faults"].get("wholerestart", 0) >= 1
    assert not res["ok"] and res["verdict"] == "fail", res["report"]
    assert res["violations"] > 0
    assert "logs: fail" in res["report"], res["report"]
