"""The owner's side (doozer/consensus/proposer.py): ACCEPT with the implicit
ballot in its own instances, pipelined; skipping the ones it will not use
(rules 5-6); and its hand-off (SPEC §11, SIGTERM), which gives up its unused
instances, and never one it proposed in or one its queued items need.

Genesis ``a, b, c``, α 50: ``a`` owns 3, 6, 9 ... (instance s is owned by
``M[s % 3]``); the window is 1..50 until something is applied.
"""

from __future__ import annotations

from sequtil import ABC, seq, sent

from doozer.consensus import NOOP
from doozer.consensus import durable as dur
from doozer.consensus.messages import Accept, Accepted, Prepare, Skip
from doozer.consensus.value import encode_batch


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


def test_owner_sends_accept_with_implicit_ballot() -> None:
    """The owner skips phase 1: ACCEPT(s, (0, self), batch) to the others."""
    s = seq("b")
    s.propose(b"x", 0.0)
    s.flush(0.0)
    out = s.take_outbox()
    accepts = [(d, m) for d, m in out if type(m) is Accept]
    assert sorted(d for d, _ in accepts) == ["a", "c"]
    assert accepts[0][1] == Accept(1, (0, "b"), encode_batch([b"x"]))
    assert not [m for _, m in out if type(m) is Prepare]


def test_pipelines_several_instances() -> None:
    """An owner proposes in its next instance before the previous is decided."""
    s = seq("b", max_value=2000)
    for i in range(3):
        s.propose(bytes([i]) * 1200, 0.0)
    s.flush(0.0)
    assert sorted({m.seqn for _, m in sent(s, Accept)}) == [1, 4, 7]


def test_owner_skips_below_others_proposal() -> None:
    """Seeing ACCEPT for 4, a skips its unused 3: SKIP(a, 1, 4)."""
    s = seq("a")
    s.receive("b", Accept(4, (0, "b"), b"v"), 0.0)
    s.flush(0.0)
    skips = sent(s, Skip)
    assert skips and skips[0][1] == Skip("a", 1, 4)
    assert s._decided.get(3) == NOOP


def test_skipped_instance_never_proposed() -> None:
    """After skipping below 4, a proposes in 6, not 3."""
    s = seq("a")
    s.receive("b", Accept(4, (0, "b"), b"v"), 0.0)
    s.flush(0.0)
    s.take_outbox()
    s.propose(b"x", 0.0)
    s.flush(0.0)
    assert {m.seqn for _, m in sent(s, Accept)} == {6}


def test_owner_passes_over_prepared_instance() -> None:
    """An instance a revoker prepared is skipped by its owner (rule 6)."""
    s = seq("a")
    s.receive("b", Prepare((3,), (1, "b")), 0.0)
    s.flush(0.0)
    s.take_outbox()
    s.propose(b"x", 0.0)
    s.flush(0.0)
    assert {m.seqn for _, m in sent(s, Accept)} == {6}
