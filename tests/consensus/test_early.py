"""Messages for instances just beyond the window (doozer/consensus/early.py):
held while near, handled once the window reaches them, dropped when far."""

from __future__ import annotations

from sequtil import ABC, seq, sent

from doozer.consensus import NOOP
from doozer.consensus.instance import digest
from doozer.consensus.messages import Accept, Accepted, Skip


def test_beyond_window_dropped() -> None:
    """An ACCEPT beyond the known memberships is dropped, not accepted."""
    s = seq("a", alpha=5)
    s.receive("b", Accept(7, (0, "b"), b"v"), 0.0)
    assert sent(s, Accepted) == [] and s.counters["beyond_window"] == 1


def test_beyond_window_messages_handled_once_the_window_reaches_them() -> None:
    """An ACCEPT and an ACCEPTED for 7 arrive while a's window ends at 5 (a is
    a little behind): they are held, not lost, and handled as soon as M(7) is
    known: a accepts 7, learns it is decided, and skips its unused 3 and 6
    (rule 5), with no WANT and no revocation."""
    s = seq("a", alpha=5)
    s.receive("b", Accept(7, (0, "b"), b"v"), 0.0)
    s.receive("c", Accepted(7, (0, "b"), digest(b"v")), 0.0)
    s.flush(0.0)
    assert sent(s, Accepted) == [] and s.counters["held_early"] == 2
    s.set_members(6, ABC)  # as after applying 1 and 2
    s.set_members(7, ABC)
    assert s.next_wakeup() == 0.0  # held messages are due now
    s.tick(0.0)
    out = s.take_outbox()
    assert {m for _, m in out if type(m) is Accepted} == {Accepted(7, (0, "b"), digest(b"v"))}
    assert {m for _, m in out if type(m) is Skip} == {Skip("a", 1, 7)}
    assert s._decided[7] == b"v" and s._decided[6] == NOOP and len(s.early) == 0
    s.receive("b", Accept(300, (0, "b"), b"v"), 0.0)  # far beyond: not kept
    assert len(s.early) == 0
