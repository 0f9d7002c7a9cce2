"""A node's writes that are never decided here (doozer/node.py): timed out,
or answered from a snapshot that shows them decided."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from doozer import mutation
from doozer.errors import DoozerError
from doozer.node import Node
from doozer.peer import Snapshot
from doozer.store import Store
from doozer.testing import single_node


def undecided_node(clock: Clock, proposed: list | None = None) -> Node:
    """A node with a 2.5 s write timeout whose writes are never decided
    (each item it proposes is appended to ``proposed``)."""
    node = single_node(clock, write_timeout=2.5)
    sink = proposed if proposed is not None else []
    node.sequencer.propose = lambda item, now: sink.append(item)  # no quorum, as it were
    return node


def peer_snapshot(node: Node, items: list[bytes]) -> Snapshot:
    """A peer's snapshot one instance past ``node``: ``items`` decided there."""
    store = Store.from_snapshot(node.store.snapshot(), hist=node.store.hist)
    store.apply(items)
    seqn = node.applied_seqn + 1
    alpha = node.sequencer.alpha
    return Snapshot(
        cluster=node.cluster,
        cluster_id=node.cluster_id or "",
        alpha=alpha,
        seqn=seqn,
        members={s: [node.id] for s in range(seqn + 1, seqn + alpha + 1)},
        store=store.snapshot(),
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
        node._internal_write(mutation.SET, "/x", b"1")
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
