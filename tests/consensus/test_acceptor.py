"""The acceptor (doozer/consensus/acceptor.py), Paxos rules 1-3, through a
sequencer fed by hand: ACCEPTED to every member, NACKs, PROMISEs, SKIPs
only from their owner, and decided or discarded instances answered with
LEARN or TOO_OLD. Genesis ``a, b, c`` (tests/sequtil.py)."""

from __future__ import annotations

from sequtil import seq, sent

from doozer.consensus import NOOP
from doozer.consensus.instance import digest
from doozer.consensus.messages import Accept, Accepted, Learn, Nack, Prepare, Promise, Skip, TooOld


def test_acceptor_broadcasts_accepted() -> None:
    """An acceptor answers ACCEPT with ACCEPTED to every member."""
    s = seq("a")
    s.receive("b", Accept(1, (0, "b"), b"v"), 0.0)
    out = sent(s, Accepted)
    assert sorted(d for d, _ in out) == ["b", "c"]
    assert out[0][1] == Accepted(1, (0, "b"), digest(b"v"))


def test_zero_ballot_from_non_owner_dropped() -> None:
    """ACCEPT(1, (0, c)) is dropped: c does not own instance 1."""
    s = seq("a")
    s.receive("c", Accept(1, (0, "c"), b"v"), 0.0)
    assert s.take_outbox() == [] and s.counters["bad_ballot"] == 1


def test_nack_below_promise() -> None:
    """After promising (1, c), the owner's ACCEPT is NACKed."""
    s = seq("a")
    s.receive("c", Prepare((1,), (1, "c")), 0.0)
    assert sent(s, Promise) == [("c", Promise((1, "c"), ((1, None, None),)))]
    s.receive("b", Accept(1, (0, "b"), b"v"), 0.0)
    assert sent(s, Nack) == [("b", Nack(1, (1, "c")))]


def test_promise_reports_accepted_value() -> None:
    """PROMISE carries the highest ballot accepted and its value."""
    s = seq("a")
    s.receive("b", Accept(1, (0, "b"), b"v"), 0.0)
    s.take_outbox()
    s.receive("c", Prepare((1, 2), (1, "c")), 0.0)
    [(_, p)] = sent(s, Promise)
    assert p.entries == ((1, (0, "b"), b"v"), (2, None, None))


def test_skip_decides_owner_range_as_noop() -> None:
    """SKIP(c, 1, 6) decides c's instances 2 and 5, and nothing else."""
    s = seq("a")
    s.receive("c", Skip("c", 1, 6), 0.0)
    assert s._decided == {2: NOOP, 5: NOOP}


def test_skip_from_impostor_ignored() -> None:
    """A SKIP naming an owner other than its sender is dropped."""
    s = seq("a")
    s.receive("b", Skip("c", 1, 6), 0.0)
    assert s._decided == {}


def test_decided_instance_answered_with_learn() -> None:
    """An ACCEPT for a decided instance is answered with its decision."""
    s = seq("a")
    s.receive("c", Learn(1, NOOP), 0.0)
    s.take_decided()
    s.receive("b", Accept(1, (0, "b"), b"v"), 0.0)
    assert sent(s, Learn) == [("b", Learn(1, NOOP))]


def test_below_floor_never_promised() -> None:
    """A PREPARE for a discarded instance gets TOO_OLD, never a PROMISE."""
    s = seq("a", retain=2)
    for n in (1, 2, 3, 4):
        s.receive("c", Learn(n, NOOP), 0.0)
        s.take_decided()
    s.receive("b", Prepare((1,), (9, "b")), 0.0)
    out = s.take_outbox()
    assert ("b", TooOld(1, 3)) in out and not [m for _, m in out if type(m) is Promise]
