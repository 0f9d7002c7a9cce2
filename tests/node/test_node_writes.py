"""A node's writes that are never decided here (doozer/node/node.py): timed out,
or answered from a snapshot that shows them decided."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from doozer.store import mutation
from doozer.errors import DoozerError
from doozer.node import Node
from doozer.node.snapshot import Snapshot

from doozer.server.config import Config
from doozer.testing import build_node, single_node
from doozer.store import snapshot as store_snapshot


def undecided_node(clock: Clock, proposed: list | None = None) -> Node:
    """A node with a 2.5 s write timeout whose writes are never decided
    (each item it proposes is appended to ``proposed``)."""
    node = single_node(clock, write_timeout=2.5)
    sink = proposed if proposed is not None else []
    node.sequencer.propose = lambda item, now: sink.append(item)  # no quorum, as it were
    return node


def peer_snapshot(node: Node, items: list[bytes]) -> Snapshot:
    """A peer's snapshot one instance past ``node``: ``items`` decided there."""
    store = store_snapshot.load(store_snapshot.dump(node.store), hist=node.store.hist)
    store.apply(items)
    seqn = node.applied_seqn + 1
    alpha = node.sequencer.alpha
    return Snapshot(
        cluster=node.cluster,
        cluster_id=node.cluster_id or "",
        alpha=alpha,
        seqn=seqn,
        members={s: [node.id] for s in range(seqn + 1, seqn + alpha + 1)},
        store=store_snapshot.dump(store),
    )


def check_unavailable_after(clock: Clock, seconds: float, failures: list) -> None:
    clock.advance(seconds - 0.1)
    assert failures == []
    clock.advance(0.2)
    err = failures[0]
    assert isinstance(err, DoozerError) and err.code == "UNAVAILABLE"
    assert f"within {seconds:g} s" in str(err)


def test_a_client_write_times_out_after_the_write_timeout() -> None:
    clock = Clock()
    failures: list[Any] = []
    undecided_node(clock).set("/x", b"1").addErrback(lambda f: failures.append(f.value))
    check_unavailable_after(clock, 2.5, failures)


def test_a_bookkeeping_write_says_it_waited_30_s() -> None:
    """The node's own writes wait at least 30 s. The UNAVAILABLE text once
    named the client timeout for them too, so node logs said "2 s" for
    writes that had waited 30 (and misled the reading of a stall)."""
    clock = Clock()
    node = undecided_node(clock)
    failures: list[Any] = []

    def observe(event: dict) -> None:
        if "err" in event:
            failures.append(event["err"])

    globalLogPublisher.addObserver(observe)
    try:
        node.writes.internal(mutation.SET, "/x", b"1")
        check_unavailable_after(clock, 30.0, failures)
    finally:
        globalLogPublisher.removeObserver(observe)


def test_writes_a_snapshot_shows_decided_are_answered_at_install() -> None:
    """A node that catches up by snapshot never applies the instances below
    it. Writes of its own that were decided there once timed out as
    UNAVAILABLE (indeterminate) although they had committed; the snapshot's
    de-duplication records now answer them, failures included."""
    clock = Clock()
    proposed: list[bytes] = []
    node = undecided_node(clock, proposed)
    results: dict[str, Any] = {}
    node.set("/done", b"1").addBoth(lambda r: results.__setitem__("done", r))
    node.set("/done", b"2", rev=0).addBoth(lambda r: results.__setitem__("refused", r))
    node.set("/elsewhere", b"1").addBoth(lambda r: results.__setitem__("elsewhere", r))
    snap = peer_snapshot(node, proposed[:2])  # the third was not decided there
    assert node.install(snap)
    done = node.store.get("/done")
    assert done.value == b"1" and results["done"] == done.rev
    assert isinstance(results["refused"].value, DoozerError)
    assert results["refused"].value.code == "REV_MISMATCH"
    assert "elsewhere" not in results  # still waiting: it may yet be decided
    clock.advance(2.6)
    assert results["elsewhere"].value.code == "UNAVAILABLE"
    assert len(results) == 3


def test_a_write_in_flight_below_a_snapshot_is_never_proposed_again() -> None:
    """Issue 15, failure 1: a write this node had put in an instance at or
    below a snapshot it installs may have been decided there; the snapshot
    settles it. If its record says so the writer gets the outcome, else
    UNAVAILABLE, indeterminate, at once; it is never proposed again (it
    would be applied a second time, after writes acknowledged since)."""
    clock = Clock()
    node = single_node(clock, write_timeout=10)
    sent: list = []
    node._send = lambda dest, msg: sent.append(msg)
    # Three members, two of them silent: this node's proposals stay open.
    snap = peer_snapshot(node, [])
    snap.members = {s: [node.id, "B", "C"] for s in snap.members}
    assert node.install(snap)
    results: list[Any] = []
    node.set("/k", b"from-A").addBoth(results.append)
    clock.advance(0)
    flat = [one for m in sent for one in getattr(m, "messages", (m,))]
    proposed = [m for m in flat if type(m).__name__ == "Accept"]
    assert proposed, "the write was proposed"
    later = peer_snapshot(node, [])
    later.seqn += 5
    later.members = {s: [node.id, "B", "C"] for s in range(later.seqn + 1, later.seqn + 51)}
    store = store_snapshot.load(later.store)
    store.apply([], seqn=later.seqn)
    later.store = store_snapshot.dump(store)
    assert node.install(later)
    assert len(results) == 1 and isinstance(results[0].value, DoozerError)
    assert results[0].value.code == "UNAVAILABLE" and results[0].value.extra == {"indeterminate": True}
    sent.clear()
    clock.advance(5)
    flat = [one for m in sent for one in getattr(m, "messages", (m,))]
    assert all(b"from-A" not in getattr(m, "value", b"") for m in flat)


def test_a_running_node_refuses_a_snapshot_of_another_cluster_id() -> None:
    """A snapshot of another incarnation of a cluster with the same name
    (another id) is refused, not installed over this node's state."""
    clock = Clock()
    node = single_node(clock)
    snap = peer_snapshot(node, [])
    snap.cluster_id = "SOMEONE-ELSE"
    with pytest.raises(ValueError, match="SOMEONE-ELSE"):
        node.install(snap)
    assert node.applied_seqn == snap.seqn - 1


@pytest.mark.logs_failures
def test_a_failure_in_applying_stops_the_node_without_a_gap() -> None:
    """An exception while applying an instance (a bug) must not leave a gap:
    the instances handed out after it would never be applied here, so the
    node stops for good (it no longer votes or takes writes) and says so,
    rather than applying later instances over a missing one."""
    clock = Clock()
    node = single_node(clock)
    fatal: list[str] = []
    node.on_fatal.append(fatal.append)
    real_apply = node.store.apply
    calls = []

    def apply(items: list, seqn: Any = None) -> Any:
        calls.append(seqn)
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return real_apply(items, seqn)

    node.store.apply = apply  # type: ignore[method-assign]
    before = node.applied_seqn
    results: list[Any] = []
    for i in range(2):
        node.set(f"/k{i}", b"v").addBoth(results.append)
        clock.advance(0)
    assert fatal and "instance" in fatal[0] and "failed" in fatal[0]
    assert node.failed is not None and not node.running and not node.writable
    assert node.applied_seqn == before + 1  # nothing after the failed one
    assert len(results) == 2 and isinstance(results[1].value, DoozerError)
    with pytest.raises(DoozerError):
        node.set("/after", b"v")
    node.peers.receive("B", object())  # no longer fed to consensus
    clock.advance(1)
    assert node.applied_seqn == before + 1


def test_a_write_before_the_node_is_in_a_cluster_says_to_wait_for_readyz() -> None:
    """A node not in a cluster yet (looking for its peers) refuses a write
    READONLY, saying to wait for /readyz: not "not a member", which read
    as a broken node."""
    node = build_node(Config(pulse=0), Clock(), "TESTNODE")
    with pytest.raises(DoozerError) as e:
        node.check_writable()
    assert e.value.code == "READONLY"
    assert "no cluster yet" in e.value.detail and "/readyz" in e.value.detail


def test_a_write_as_a_new_cluster_starts_is_taken_and_applied_after_its_bookkeeping() -> None:
    """Between start_genesis and the apply of its CAL (an fsync with a data
    dir) the node is ready (/readyz) and its sequencer counts it a member:
    a write then is proposed behind the cluster's own writes, not refused
    READONLY (seen: 1 fresh node in ~100 written to as /v1/rev answered)."""
    clock = Clock()
    node = build_node(Config(pulse=0), clock, "TESTNODE")
    node.start_genesis()
    assert not node.member  # the CAL is proposed, not applied
    d = node.set("/x", b"1", -1)
    clock.advance(0)
    rev = d.result
    assert node.member and node.store.get("/x").value == b"1"
    assert rev > node.store.get("/ctl/cal/0").rev
