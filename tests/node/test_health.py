"""The node's verdicts for ``/livez`` and ``/readyz`` (doozer/node/health.py):
each reason on a node in a known state, the disk watch on a held runner,
and quorum and catching up on whole nodes in the simulation
(:mod:`nodesim`), all on deterministic clocks."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from doozer.node import build_node, health
from doozer.node.health import DISK_STALL, DiskWatch
from doozer.server.config import Config
from doozer.storage.errors import StorageFailed
from doozer.testing import single_node
from node.test_datadir import HeldRunner, durable_node, settle
from nodesim import Load, NodeSim, SimNode


def readiness(sn: SimNode) -> health.Verdict:
    return health.readiness(sn.node, sn.clock.seconds())


def reasons_while(sim: NodeSim, sn: SimNode, seconds: float, step: float = 0.002) -> list[str]:
    """The readiness reasons ``sn`` gives, in order, each change once
    (``""``: ready), checked every ``step`` simulated seconds."""
    seen: list[str] = []
    end = sim.now + seconds
    while sim.now < end:
        reason = readiness(sn).reason
        if not seen or seen[-1] != reason:
            seen.append(reason)
        sim.run_for(step)
    return seen


def test_a_lone_member_is_live_and_ready() -> None:
    """A one-member cluster is its own quorum: live and ready at once."""
    clock = Clock()
    node = single_node(clock)
    assert health.liveness(node, clock.seconds()) == health.OK
    assert health.readiness(node, clock.seconds()) == health.OK


def test_a_node_in_no_cluster_is_live_but_not_ready() -> None:
    """A node still looking for its peers (or copying their state) turns and
    answers, but has nothing to serve."""
    clock = Clock()
    node = build_node(Config(pulse=0), clock, "LONELY", rng=random.Random(0))
    assert health.liveness(node, 0.0).ok
    verdict = health.readiness(node, 0.0)
    assert (verdict.ok, verdict.reason) == (False, "no_cluster")


def test_a_stopped_node_is_not_ready() -> None:
    """A node shutting down (stopped, not failed) sends clients away."""
    clock = Clock()
    node = single_node(clock)
    node.stop()
    assert health.liveness(node, clock.seconds()).ok
    assert health.readiness(node, clock.seconds()).reason == "stopped"


def test_a_node_whose_storage_failed_is_neither_live_nor_ready(tmp_path: Any) -> None:
    """SPEC §8: a full disk stops the node for good; until the process is
    gone, both probes say so, with the error."""
    clock = Clock()
    node = durable_node(str(tmp_path), clock)
    settle(clock)
    assert node.storage is not None
    node.storage.storage_failed(
        StorageFailed("/data/log-00000001", OSError(28, "No space left on device")))
    for verdict in (health.liveness(node, clock.seconds()), health.readiness(node, clock.seconds())):
        assert (verdict.ok, verdict.reason) == (False, "failed")
        assert "No space left on device" in verdict.detail


def test_catching_up_counts_from_the_highest_instance_heard_of() -> None:
    """Within one window (α instances) of the highest instance any peer
    said it decided is caught up; one more is not."""
    clock = Clock()
    node = single_node(clock, alpha=50)
    seq = node.sequencer
    assert seq is not None
    seq.peer_decided["PEER"] = node.applied_seqn + 50
    assert health.readiness(node, clock.seconds()).ok
    seq.peer_decided["PEER"] = node.applied_seqn + 51
    verdict = health.readiness(node, clock.seconds())
    assert (verdict.ok, verdict.reason) == (False, "catching_up")
    assert verdict.figures == {"behind": 51, "window": 50}


def test_a_stalled_disk_makes_the_node_not_live_until_it_answers(tmp_path: Any) -> None:
    """A write to the data dir that has not come back for more than
    DISK_STALL seconds: not live and not ready; live again once it has."""
    clock, runner = Clock(), HeldRunner()
    node = durable_node(str(tmp_path), clock, runner)
    settle(clock, runner)
    assert health.liveness(node, clock.seconds()).ok
    node.set("/x", b"1").addErrback(lambda f: None)
    for _ in range(3):
        clock.advance(0)
    assert runner.waiting, "the write's fsync is held"
    clock.advance(DISK_STALL)
    assert health.liveness(node, clock.seconds()).ok, "exactly the bound is still live"
    clock.advance(0.5)
    for verdict in (health.liveness(node, clock.seconds()), health.readiness(node, clock.seconds())):
        assert (verdict.ok, verdict.reason) == (False, "disk_stalled")
        assert verdict.figures == {"stalled_seconds": DISK_STALL + 0.5}
    settle(clock, runner)
    assert health.liveness(node, clock.seconds()).ok
    assert health.readiness(node, clock.seconds()).ok


class ManualRunner:
    """Hands out one Deferred per piece of work; the test fires them."""

    def __init__(self) -> None:
        self.pieces: list[Deferred] = []

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def __call__(self, work: Any) -> Deferred:
        d: Deferred = Deferred()
        self.pieces.append(d)
        return d


def test_the_disk_watch_counts_a_queued_piece_from_the_answer_before_it() -> None:
    """Pieces run one after another: a piece queued behind a slow one has
    been owed only since that one came back, not since it was queued; a
    failed piece is an answer too, and goes on to the writer untouched."""
    clock, runner = Clock(), ManualRunner()
    watch = DiskWatch(runner, clock)
    assert watch.owed_since() is None
    first = watch(lambda: None)
    clock.advance(1)
    second = watch(lambda: None)
    assert watch.owed_since() == 0
    clock.advance(4)
    runner.pieces[0].callback(None)
    assert watch.owed_since() == 5
    failures: list[Any] = []
    second.addErrback(failures.append)
    clock.advance(2)
    runner.pieces[1].errback(OSError(5, "Input/output error"))
    assert watch.owed_since() is None
    assert first.called and failures and failures[0].check(OSError)


def test_the_disk_watch_owes_the_syncers_writes_and_starts_and_stops_it() -> None:
    """A batch the child process writes is owed like the thread's work: a
    hung write there makes the node not live all the same."""

    class HeldSyncer:
        max_data = 4096
        running = True

        def __init__(self) -> None:
            self.writes: list[Deferred] = []
            self.life: list[str] = []

        def start(self) -> None:
            self.life.append("start")

        def stop(self) -> None:
            self.life.append("stop")

        def write(self, fd: int, data: bytes, offset: int, path: str) -> Deferred:
            d: Deferred = Deferred()
            self.writes.append(d)
            return d

    clock, syncer = Clock(), HeldSyncer()
    watch = DiskWatch(ManualRunner(), clock, syncer)  # type: ignore[arg-type]
    watch.start()
    assert watch.running and watch.max_data == 4096
    written = watch.write(3, b"batch", 0, "log")
    clock.advance(DISK_STALL + 1)
    assert watch.owed_since() == 0
    syncer.writes[0].callback(0.001)
    assert written.result == 0.001 and watch.owed_since() is None
    watch.stop()
    assert syncer.life == ["start", "stop"]
    assert not DiskWatch(ManualRunner(), clock).running  # no syncer: the thread writes


def test_work_the_runner_refuses_is_not_owed() -> None:
    """A runner that refuses a piece outright (raises) was never handed
    it: the disk owes nothing, so no false stall later."""

    class Refusing(ManualRunner):
        def __call__(self, work: Any) -> Deferred:
            raise RuntimeError("the thread pool is stopped")

    clock = Clock()
    watch = DiskWatch(Refusing(), clock)
    try:
        watch(lambda: None)
    except RuntimeError:
        pass
    clock.advance(DISK_STALL * 2)
    assert watch.owed_since() is None


def test_no_quorum_while_two_of_three_are_stopped_then_ready_again() -> None:
    """SIGSTOP two members of three: within three PING intervals the third
    says no_quorum (1 of 3 heard, quorum 2) while it stays live; once they
    wake it is ready again."""
    sim = NodeSim(7, 3)
    sim.start()
    sim.run_for(3)
    a, b, c = sim.nodes.values()
    assert all(readiness(s).ok for s in (a, b, c))
    sim.pause(b, 10)
    sim.pause(c, 10)
    assert reasons_while(sim, a, 9, step=0.01) == ["", "no_quorum"]
    verdict = readiness(a)
    assert verdict.figures == {"voters": 3, "connected": 1, "quorum": 2}
    assert health.liveness(a.node, a.clock.seconds()).ok
    sim.run_for(2)  # they wake at 10 s
    assert readiness(a).ok


def test_a_joining_node_is_ready_only_once_it_has_caught_up() -> None:
    """A node joining a loaded cluster: in no cluster while it copies a
    snapshot (2 s), then unsure until it hears a voter, then thousands of
    instances behind, then ready once within one window."""
    sim = NodeSim(7, 3)
    sim.start()
    sim.run_for(3)
    load = Load(sim, clients=2)
    load.start()
    sim.run_for(1)
    new = sim.join(copy_seconds=2.0)
    behind: list[int] = []
    seen: list[str] = []
    end = sim.now + 6
    while sim.now < end:
        verdict = readiness(new)
        if not seen or seen[-1] != verdict.reason:
            seen.append(verdict.reason)
            behind.append(verdict.figures.get("behind", 0))
        sim.run_for(0.002)
    load.stop()
    assert seen[:4] == ["no_cluster", "no_peers", "catching_up", ""], seen
    assert behind[2] > 10 * sim.alpha, "the copy was far behind when installed"
    sim.run_for(2)
    assert readiness(new).ok


def test_a_non_member_that_hears_no_voter_is_not_ready() -> None:
    """A fourth node (no slot for it) needs no quorum, but must hear some
    voter to know it is caught up: with every member stopped it is not
    ready (no_peers); once they wake it is."""
    sim = NodeSim(7, 3)
    sim.start()
    sim.run_for(3)
    members = list(sim.nodes.values())
    new = sim.join()
    sim.run_for(2)
    assert not new.node.member and readiness(new).ok
    for sn in members:
        sim.pause(sn, 10)
    sim.run_for(5)
    verdict = readiness(new)
    assert (verdict.reason, verdict.figures) == ("no_peers", {"voters": 3, "connected": 0})
    sim.heal()
    sim.run_for(2)
    assert readiness(new).ok
