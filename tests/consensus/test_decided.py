"""The learner's log (doozer/consensus/decided.py) through a sequencer fed
by hand: what it keeps, its horizon, and a snapshot installed behind it.

Genesis ``a, b, c`` as in test_sequencer.py; values arrive as LEARNs.
"""

from __future__ import annotations

import random

from doozer.consensus import NOOP
from doozer.consensus.decided import LOG_ENTRY_OVERHEAD
from doozer.consensus.messages import Learn
from doozer.consensus.sequencer import Sequencer
from doozer.consensus.value import encode_batch

ABC = ["a", "b", "c"]


def seq(**kw) -> Sequencer:
    return Sequencer("a", genesis=ABC, rng=random.Random(0), **kw)


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
