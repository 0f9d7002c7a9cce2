"""The learner (doozer/consensus/decided.py) through a sequencer fed by
hand: deciding on a quorum of ACCEPTED, handing out strictly in order, what
the log keeps (count, seconds, bytes), its horizon, and a snapshot installed
behind it.

Genesis ``a, b, c`` (tests/sequtil.py); values mostly arrive as LEARNs.
"""

from __future__ import annotations

from sequtil import ABC, seq, sent

from doozer.consensus import NOOP
from doozer.consensus.decided import LOG_ENTRY_OVERHEAD
from doozer.consensus.instance import digest
from doozer.consensus.messages import Accept, Accepted, Learn, TooOld, Want
from doozer.consensus.value import encode_batch


def test_a_value_is_known_on_both_sides_of_the_hand_out_until_trimmed() -> None:
    """Decided but waiting for an earlier instance, or handed out and
    kept: either answers a WANT; beyond ``retain`` the oldest go and the
    horizon moves past them."""
    s = seq(retain=2)
    log = s.decided_log
    s.receive("c", Learn(1, NOOP), 0.0)
    s.receive("c", Learn(3, NOOP), 0.0)
    assert log.value_of(3) == NOOP  # decided; 2 is missing, so not handed out
    assert [n for n, _ in s.take_decided()] == [1]
    assert log.value_of(1) == NOOP and log.oldest == 1
    s.receive("c", Learn(2, NOOP), 0.0)
    assert [n for n, _ in s.take_decided()] == [2, 3]
    assert (log.value_of(1), log.value_of(2), log.value_of(3)) == (None, NOOP, NOOP)
    assert log.oldest == 2 and log.bytes == 2 * (len(NOOP) + LOG_ENTRY_OVERHEAD)


def test_an_install_behind_what_was_handed_out_hands_it_out_again() -> None:
    """A snapshot made below what this node handed out: the values above
    its floor are handed out again from the log (the node's store is the
    snapshot's now), and the log starts empty after the floor."""
    s = seq()
    for n in range(1, 6):
        s.receive("c", Learn(n, encode_batch([b"%d" % n])), 0.0)
    assert [n for n, _ in s.take_decided()] == [1, 2, 3, 4, 5]
    s.install(2, {t: ABC for t in range(3, 53)})
    log = s.decided_log
    assert (log.log, log.oldest, log.bytes) == ({}, 3, 0)
    assert s.take_decided() == [(3, [b"3"]), (4, [b"4"]), (5, [b"5"])]
    assert log.oldest == 3 and sorted(log.log) == [3, 4, 5]


def test_decided_on_quorum_of_accepted() -> None:
    """Its own vote plus one ACCEPTED of the same ballot and digest decide."""
    s = seq("b")
    s.propose(b"x", 0.0)
    s.flush(0.0)
    value = encode_batch([b"x"])
    s.receive("a", Accepted(1, (0, "b"), digest(value)), 0.001)
    assert s.take_decided() == [(1, [b"x"])]


def test_decided_handed_out_strictly_in_order() -> None:
    """A decision for 2 waits until 1 is decided."""
    s = seq("a")
    s.receive("b", Learn(2, encode_batch([b"two"])), 0.0)
    assert s.take_decided() == []
    s.receive("b", Learn(1, encode_batch([b"one"])), 0.0)
    assert s.take_decided() == [(1, [b"one"]), (2, [b"two"])]


def test_accepted_before_accept_decides_when_value_arrives() -> None:
    """A quorum of ACCEPTED seen before the ACCEPT decides once its value arrives."""
    s = seq("a")
    value = encode_batch([b"x"])
    s.receive("b", Accepted(1, (0, "b"), digest(value)), 0.0)
    s.receive("c", Accepted(1, (0, "b"), digest(value)), 0.0)
    assert s.take_decided() == []
    s.receive("b", Accept(1, (0, "b"), value), 0.0)
    assert s.take_decided() == [(1, [b"x"])]


def test_accepted_from_non_member_ignored() -> None:
    """Votes count only from members of the instance."""
    s = seq("a")
    s.receive("b", Accept(1, (0, "b"), b"\x90"), 0.0)
    s.receive("z", Accepted(1, (0, "b"), digest(b"\x90")), 0.0)
    s.receive("z", Accepted(1, (0, "b"), digest(b"\x90")), 0.0)
    assert s.take_decided() == [] or s.counters.get("bad_accepted")


def test_log_keeps_values_for_retain_seconds_beyond_retain() -> None:
    """Regression (soak seed 15311, docs/testing.md bug 9): a log of the
    last 1,000 instances lasted under 2 s under load, less than a snapshot
    copy, so the node that installed one found no peer that still held its
    next instance. Values now stay ``retain_seconds`` as well."""
    s = seq("a", retain=2, retain_seconds=10.0)
    for n in (1, 2, 3, 4):
        s.receive("c", Learn(n, NOOP), 0.0)
        s.take_decided()
    s.receive("b", Want(1, 5), 9.0)
    assert [m.seqn for _, m in sent(s, Learn)] == [1, 2, 3, 4]
    s.receive("c", Learn(5, NOOP), 10.5)  # the first four are 10.5 s old
    s.take_decided()
    s.receive("b", Want(1, 6), 10.5)
    assert sent(s, TooOld) == [("b", TooOld(1, 4))]  # the last 2 (retain) stay


def test_log_bytes_bound_wins_over_count_and_time() -> None:
    """However long values must stay, the log never holds more than about
    ``retain_bytes``: its memory stays bounded at any rate."""
    from doozer.consensus.sequencer import LOG_ENTRY_OVERHEAD

    value = encode_batch([b"x" * 1000])
    s = seq("a", retain=1000, retain_seconds=60.0, retain_bytes=3 * (len(value) + LOG_ENTRY_OVERHEAD))
    for n in range(1, 11):
        s.receive("c", Learn(n, value), 0.0)
        s.take_decided()
    s.receive("b", Want(1, 11), 0.0)
    assert sent(s, TooOld) == [("b", TooOld(1, 8))]
    s.receive("b", Want(8, 11), 0.0)
    assert [m.seqn for _, m in sent(s, Learn)] == [8, 9, 10]
