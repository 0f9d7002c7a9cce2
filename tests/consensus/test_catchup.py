"""Catch-up, heartbeats and forwarding (doozer/consensus/catchup.py) through
a sequencer fed by hand: WANTs pipelined and clocked by their answers,
TOO_OLD and when a snapshot is needed (and when it no longer is), installing
one, PINGs, and FORWARD from non-members.

In the left-behind cases, ``a`` is behind; ``j`` is ahead but its log starts beyond what ``a`` misses
(it answers TOO_OLD); ``b`` keeps the whole log.
"""

from __future__ import annotations

import random

from sequtil import ABC, seq, sent

from doozer.consensus import NOOP
from doozer.consensus.messages import (
    Accept,
    Forward,
    Learn,
    Nack,
    Ping,
    Prepare,
    Skip,
    TooOld,
    Want,
)
from doozer.consensus.sequencer import Sequencer
from doozer.consensus.value import encode_batch


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


def test_catch_up_pipelines_wants_clocked_by_their_answers() -> None:
    """Regression (soak seed 15311, docs/testing.md bug 9): one WANT of 64
    instances per --fill (640 a second) fell behind a cluster deciding
    600-2,000 a second, so a node that installed a snapshot never caught up
    while writes went on. It asks for several batches at once, and for the
    next ones as soon as all of them are answered, not a fill later."""
    s = seq("a")
    s.receive("b", Ping(1000, 1000), 0.0)
    s.take_outbox()
    s.tick(0.2)
    assert sent(s, Want) == [("b", Want(1, 65)), ("b", Want(65, 129)),
                             ("b", Want(129, 193)), ("b", Want(193, 257))]
    for n in range(1, 256):
        s.receive("b", Learn(n, NOOP), 0.21)
    assert sent(s, Want) == []  # one is still missing
    s.receive("b", Learn(256, NOOP), 0.21)
    assert sent(s, Want) == [("b", Want(257, 321)), ("b", Want(321, 385)),
                             ("b", Want(385, 449)), ("b", Want(449, 513))]
    assert len(s.take_decided()) == 256


def test_too_old_asks_for_snapshot() -> None:
    """TOO_OLD beyond our next seqn sets snapshot_needed."""
    s = seq("a")
    s.receive("b", TooOld(1, 500), 0.0)
    assert s.snapshot_needed


def test_too_old_from_a_fresh_peer_asks_another_before_a_snapshot() -> None:
    """Regression (fault suite, seeds 7001 and 2026): a member a little
    behind asked the most advanced peer, a node that had just joined by
    snapshot, got TOO_OLD and copied a whole snapshot, although the other
    member's log held every missing instance. It must ask that one first,
    and want a snapshot only when no peer's log reaches back far enough."""
    s = seq("a")
    s.receive("b", Ping(40, 40), 0.0)
    s.receive("j", Ping(50, 50), 0.0)
    s.take_outbox()
    s.tick(0.2)
    assert sent(s, Want) == [("j", Want(1, 51))]
    s.receive("j", TooOld(1, 45), 0.2)
    assert not s.snapshot_needed
    s.tick(0.25)
    assert sent(s, Want) == [("b", Want(1, 41))]
    for n in range(1, 41):
        s.receive("b", Learn(n, NOOP), 0.3)
    assert len(s.take_decided()) == 40
    # Now only j is ahead, and its log starts beyond our next seqn: it is
    # not asked again, and only a snapshot can bring us up (seen as soon as
    # the last of b's answers arrived, which asks for more at once).
    s.tick(0.5)
    assert sent(s, Want) == [] and s.snapshot_needed


def test_too_old_from_the_only_peer_ahead_asks_for_a_snapshot() -> None:
    """b is no further than we are: nobody else can fill the gap."""
    s = seq("a")
    s.receive("b", Ping(0, 0), 0.0)
    s.receive("j", Ping(50, 50), 0.0)
    s.receive("j", TooOld(1, 45), 0.1)
    assert s.snapshot_needed


def test_ping_ahead_triggers_want() -> None:
    """A PING showing a peer decided further makes us ask with WANT."""
    s = seq("a")
    s.receive("b", Ping(10, 10), 0.0)
    assert sent(s, Want) == [("b", Want(1, 11))]


def test_want_answered_with_learns() -> None:
    """WANT is answered with the decided values in its range only."""
    s = seq("a")
    s.receive("c", Learn(2, NOOP), 0.0)
    s.receive("b", Want(1, 4), 0.0)
    assert sent(s, Learn) == [("b", Learn(2, NOOP))]


def test_install_sets_floor_and_window() -> None:
    """After install(F) hand-out resumes at F+1 with the given memberships."""
    s = Sequencer("j", genesis=[], alpha=2, rng=random.Random(0))
    assert not s.is_member()
    s.install(10, {11: ("a", "b", "c"), 12: ("a", "b", "c", "j")})
    assert s.members(12) == ("a", "b", "c", "j") and s.is_member(12) and not s.is_member()
    s.receive("a", Learn(11, NOOP), 0.0)
    assert s.take_decided() == [(11, [])]


def test_install_keeps_acceptor_state_above_floor() -> None:
    """A promise made above the floor survives a snapshot install."""
    s = seq("a")
    s.receive("c", Prepare((5,), (3, "c")), 0.0)
    s.install(2, {s_: tuple(ABC) for s_ in range(3, 53)})
    s.take_outbox()
    s.receive("b", Prepare((5,), (2, "b")), 0.0)
    assert sent(s, Nack) == [("b", Nack(5, (3, "c")))]


def test_install_never_proposes_again_what_the_snapshot_settled() -> None:
    """Rule 8 (issue 15, failure 1): own items in an instance at or below
    the snapshot's floor may have been decided there (the snapshot knows);
    proposing them again could apply them twice, after writes acknowledged
    since. install gives them up (returned, for the node to answer) and so
    does it with items forwarded for others to propose."""
    s = seq("b", fill=0.1)
    s.propose(b"mine", 0.0)
    s.flush(0.0)
    assert {m.seqn for _, m in sent(s, Accept)} == {1}  # to a and c
    settled = s.install(3, {t: tuple(ABC) for t in range(4, 54)})
    assert settled == [b"mine"]
    s.tick(10.0)
    assert all(b"mine" not in m.value for _, m in sent(s, Accept))
    assert s.stats()["inflight"] == 0 and s.stats()["queued"] == 0

    z = seq("z")  # a non-member forwards
    z.propose(b"fwd", 0.0)
    z.flush(0.0)
    assert sent(z, Forward)
    assert z.install(3, {t: tuple(ABC) for t in range(4, 54)}) == [b"fwd"]
    z.tick(30.0)
    assert sent(z, Forward) == []


def test_install_keeps_own_items_above_the_floor() -> None:
    """An own instance above the snapshot's floor stays this node's: it is
    retransmitted, not given up."""
    s = seq("b", fill=0.1)
    s.receive("c", Skip("c", 1, 6), 0.0)
    s.receive("a", Skip("a", 1, 6), 0.0)
    s.propose(b"mine", 0.0)
    s.flush(0.0)
    [seqn] = {m.seqn for _, m in sent(s, Accept)}
    assert seqn > 3
    assert s.install(3, {t: tuple(ABC) for t in range(4, 54)}) == []
    s.tick(1.0)
    assert {m.seqn for _, m in sent(s, Accept)} == {seqn}


def test_non_member_forwards_to_member() -> None:
    """A non-member sends its items to a member with FORWARD."""
    s = seq("z")
    s.propose(b"x", 0.0)
    s.flush(0.0)
    [(dest, msg)] = sent(s, Forward)
    assert dest in ABC and msg == Forward((b"x",))


def test_member_proposes_forwarded_items() -> None:
    """A member queues forwarded items and proposes them in its instance."""
    s = seq("b")
    s.receive("z", Forward((b"x",)), 0.0)
    s.flush(0.0)
    assert [m.value for _, m in sent(s, Accept)][0] == encode_batch([b"x"])


def test_idle_member_pings_peers() -> None:
    """With nothing to say, a member PINGs its peers about once a second."""
    s = seq("a")
    s.tick(1.0)
    assert sorted(d for d, _ in sent(s, Ping)) == ["b", "c"]
    when = s.next_wakeup()
    assert when is not None and 1.0 < when <= 2.0


def test_pings_carry_suspects_and_peers_suspects_are_kept() -> None:
    """PINGs name the members this node finds silent (set by the node's
    membership chores); a peer's list is kept with when it arrived, for
    confirming a removal (doozer/node/membership.py)."""
    s = seq("a")
    s.suspects = ("c",)
    s.tick(1.0)
    assert {d: m.suspects for d, m in sent(s, Ping)} == {"b": ("c",), "c": ("c",)}
    s.receive("b", Ping(0, 0, ("c",)), 2.5)
    assert s.peer_suspects == {"b": (("c",), 2.5)}
    state = s.debug_state()
    assert state["suspects"] == ["c"] and state["peer_suspects"] == {"b": {"suspects": ["c"], "at": 2.5}}

