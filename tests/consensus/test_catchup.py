"""When a node needs a snapshot, and when it no longer does
(doozer/consensus/catchup.py; the rest of catch-up is driven through the
whole sequencer in test_sequencer.py).

``a`` is behind; ``j`` is ahead but its log starts beyond what ``a`` misses
(it answers TOO_OLD); ``b`` keeps the whole log.
"""

from __future__ import annotations

import random

from doozer.consensus import NOOP
from doozer.consensus.messages import Learn, Ping, TooOld, Want
from doozer.consensus.sequencer import Sequencer


def sent_wants(s: Sequencer) -> list:
    return [(d, m) for d, m in s.take_outbox() if type(m) is Want]


def left_behind_j() -> Sequencer:
    """``a`` (next seqn 1) hears that ``j`` decided 50 and asks it; ``j``
    keeps only 45 on and ``b`` is not ahead: only a snapshot helps."""
    s = Sequencer("a", genesis=["a", "b", "c"], rng=random.Random(0))
    s.receive("b", Ping(0, 0), 0.0)
    s.receive("j", Ping(50, 50), 0.0)
    assert sent_wants(s) == [("j", Want(1, 51))]
    s.receive("j", TooOld(1, 45), 0.1)
    assert s.snapshot_needed
    return s


def test_the_need_ends_when_learns_fill_the_gap() -> None:
    """Leasesim seeds 129, 155, 229 ... (9 of 1,000): a node set
    ``snapshot_needed`` when no peer ahead kept what it missed, then caught
    up by LEARNs from a peer that did (heard from again), and the flag
    stayed set: its fetcher went on copying snapshots that were not ahead,
    and the lease simulation never counted it as caught up."""
    s = left_behind_j()
    s.receive("b", Ping(50, 50), 0.3)  # b keeps the log, and is heard again
    assert sent_wants(s) == [("b", Want(1, 51))]
    for n in range(1, 51):
        s.receive("b", Learn(n, NOOP), 0.35)
    assert len(s.take_decided()) == 50
    assert not s.snapshot_needed
    assert s.stats()["snapshot_needed"] is False


def test_the_need_stays_while_no_peer_is_heard_ahead() -> None:
    """The trap of leasesim seed 189: clearing the flag when the node hears
    of no peer ahead made a node of the minority look caught up at the
    heal, before the majority's figures reached it. Only having what it
    missed clears the flag; instances beyond the gap do not."""
    s = left_behind_j()
    for t in (1.0, 2.0, 5.0, 10.0):  # j falls silent: nobody is heard ahead
        s.receive("b", Ping(0, 0), t)
        s.tick(t)
    assert not s.catchup.ahead(10.0)[0]
    s.receive("c", Learn(7, NOOP), 10.0)  # beyond the gap: nothing handed out
    assert s.take_decided() == []
    assert s.snapshot_needed


def test_a_gap_filled_in_part_needs_the_snapshot_again() -> None:
    """b keeps the log but is only at 40; j, at 50, keeps 45 on. Once b's
    answers are in, 41 is what no peer ahead keeps: the need is there
    again, set before the node hands anything out, so the flag never
    looks clear in between."""
    s = left_behind_j()
    s.receive("b", Ping(40, 40), 0.3)
    assert sent_wants(s) == [("b", Want(1, 41))]
    for n in range(1, 41):
        s.receive("b", Learn(n, NOOP), 0.35)
    assert len(s.take_decided()) == 40
    assert s.snapshot_needed
    s.tick(0.5)
    assert sent_wants(s) == [] and s.snapshot_needed


def test_an_install_ends_the_need() -> None:
    """The usual way out: installing a snapshot ahead of the node."""
    s = left_behind_j()
    s.install(50, {n: ["a", "b", "c"] for n in range(51, 101)})
    assert not s.snapshot_needed and s.decided_seqn == 50
