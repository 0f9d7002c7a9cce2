"""The owner's hand-off (SPEC §11, SIGTERM): it gives up its unused
instances, and never one it proposed in or one its queued items need.

Genesis ``a, b, c``, α 50: ``a`` owns 3, 6, 9 ... (instance s is owned by
``M[s % 3]``); the window is 1..50 until something is applied.
"""

from __future__ import annotations

import random

from doozer.consensus import NOOP
from doozer.consensus import durable as dur
from doozer.consensus.messages import Accept, Accepted, Skip
from doozer.consensus.sequencer import Sequencer

ABC = ["a", "b", "c"]


def seq(node: str = "a", **kw) -> Sequencer:
    return Sequencer(node, genesis=ABC, rng=random.Random(0), **kw)


def split(out: list) -> tuple[list, list]:
    """The ACCEPTs and the SKIPs of an outbox, in order, once per message."""
    accepts = sorted({m.seqn for _, m in out if type(m) is Accept})
    skips = sorted({(m.start, m.upto) for _, m in out if type(m) is Skip and m.owner == "a"})
    return accepts, skips


def test_hand_off_skips_the_rest_of_the_window_after_the_queue() -> None:
    """The queued item goes into a's next instance (3); the SKIP names every
    a's instance after it up to the end of the window, and nothing it used."""
    s = seq()
    s.propose(b"x", 0.0)
    s.hand_off(0.0)
    accepts, skips = split(s.take_outbox())
    assert accepts == [3]
    assert skips == [(4, 51)]  # the whole rest of the window


def test_an_idle_member_gives_up_its_whole_window_at_once() -> None:
    """Without a hand-off an idle a skips nothing until others propose;
    with one, its instances 3..48 are no-ops at once (decided here too)."""
    idle = seq()
    idle.flush(0.0)
    assert split(idle.take_outbox()) == ([], [])
    s = seq()
    s.hand_off(0.0)
    assert split(s.take_outbox()) == ([], [(1, 51)])
    assert all(s._decided.get(t) == NOOP for t in range(3, 51, 3))


def test_hand_off_never_skips_an_instance_in_flight() -> None:
    """a proposed x in 3 before the hand-off: the SKIP starts after it, and 3
    is decided with x when b's vote arrives, not as a no-op."""
    s = seq()
    s.propose(b"x", 0.0)
    s.flush(0.0)
    assert split(s.take_outbox())[0] == [3]
    s.hand_off(0.0)
    accepts, skips = split(s.take_outbox())
    assert accepts == [] and skips == [(4, 51)]
    accept = s._instances[3]
    s.receive("b", Accepted(3, (0, "a"), accept.value_digest), 0.0)
    assert s._decided[3] == accept.own_value != NOOP


def test_items_waiting_for_room_are_proposed_before_the_rest_is_given_up() -> None:
    """max_inflight 1: y waits while x is in flight in 3. The hand-off must
    not skip 6, which y needs: y goes into 6 once 3 is decided, and only
    then is the rest skipped (9 on)."""
    s = seq(max_inflight=1)
    s.propose(b"x", 0.0)
    s.flush(0.0)
    s.take_outbox()
    s.propose(b"y", 0.0)
    s.hand_off(0.0)
    accepts, skips = split(s.take_outbox())
    assert accepts == [] and all(upto <= 6 for _, upto in skips), skips
    s.receive("b", Accepted(3, (0, "a"), s._instances[3].value_digest), 0.0)
    s.flush(0.0)
    accepts, skips = split(s.take_outbox())
    assert accepts == [6]
    assert skips == [(7, 51)]


def test_hand_off_does_not_chase_the_window() -> None:
    """The horizon is fixed once: when the window moves, a's new instance 51
    is not skipped by itself (skipping every new window at once made the
    others skip theirs, rule 5, and the cluster decide no-ops without end);
    rule 5 skips it as soon as a peer proposes beyond it."""
    s = seq()
    s.hand_off(0.0)
    s.take_outbox()
    s.receive("b", Skip("b", 1, 51), 0.0)
    s.receive("c", Skip("c", 1, 51), 0.0)
    decided = s.take_decided()
    assert [t for t, _ in decided] == list(range(1, 51))
    for t in range(51, 101):
        s.set_members(t, ABC)
    s.flush(0.0)
    assert split(s.take_outbox())[1] == []
    s.receive("b", Accept(55, (0, "b"), b"\x90"), 0.0)
    s.flush(0.0)
    assert (51, 55) in split(s.take_outbox())[1]


def test_hand_off_records_the_horizon_before_the_skip_leaves() -> None:
    """D4 in durable mode: the SKIP of the hand-off waits for its horizon."""
    s = seq(durable=dur.Durability(1))
    s.hand_off(0.0)
    token, records = s.take_records()
    assert dur.SkipRec(51) in records
    assert not any(type(m) is Skip for _, m in s.take_outbox())
    s.synced(token, 0.0)
    assert split(s.take_outbox())[1] == [(1, 51)]
