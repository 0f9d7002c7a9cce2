"""The sequencer fed by hand: proposing, skipping, revoking, catching up.

Genesis ``a, b, c``: instance s is owned by ``M[s % 3]``, so ``b`` owns
1, 4, 7 ..., ``c`` owns 2, 5, 8 ... and ``a`` owns 3, 6, 9 ...
"""

from __future__ import annotations

import random

import pytest

from doozer.consensus import NOOP
from doozer.consensus.instance import digest
from doozer.consensus.messages import (
    Accept,
    Accepted,
    Forward,
    Learn,
    Nack,
    Ping,
    Prepare,
    Promise,
    Skip,
    TooOld,
    Want,
)
from doozer.consensus.sequencer import Sequencer
from doozer.consensus.value import encode_batch

ABC = ["a", "b", "c"]


def seq(node: str = "a", genesis: list = ABC, **kw) -> Sequencer:
    return Sequencer(node, genesis=genesis, rng=random.Random(0), **kw)


def sent(s: Sequencer, kind: type) -> list:
    return [(d, m) for d, m in s.take_outbox() if type(m) is kind]


# -- one member -----------------------------------------------------------


def test_one_member_decides_in_one_flush_without_network() -> None:
    """A one-member cluster decides at flush, and sends nothing."""
    s = seq("a", ["a"])
    s.propose(b"x", 0.0)
    s.flush(0.0)
    assert s.take_outbox() == []
    assert s.take_decided() == [(1, [b"x"])]


def test_proposals_of_one_turn_share_an_instance() -> None:
    """Everything proposed before a flush goes into one instance, in order."""
    s = seq("a", ["a"])
    for i in range(10):
        s.propose(b"%d" % i, 0.0)
    s.tick(0.0)
    assert s.take_decided() == [(1, [b"%d" % i for i in range(10)])]


def test_batch_cut_before_size_limit() -> None:
    """Items beyond the value limit go into the next instance."""
    s = seq("a", ["a"], max_value=2000)
    for i in range(6):
        s.propose(bytes([i]) * 500, 0.0)
    s.flush(0.0)
    decided = s.take_decided()
    assert len(decided) > 1
    assert [i for _, items in decided for i in items] == [bytes([i]) * 500 for i in range(6)]
    assert all(len(encode_batch(items)) <= 2000 for _, items in decided)


def test_oversized_item_refused() -> None:
    """An item that cannot fit in any instance raises ValueError."""
    with pytest.raises(ValueError):
        seq("a", ["a"], max_value=1000).propose(b"x" * 1000, 0.0)


def test_propose_only_queues() -> None:
    """propose() sends and decides nothing until flush or tick."""
    s = seq("a", ["a"])
    s.propose(b"x", 0.0)
    assert s.take_decided() == [] and s.next_wakeup() == 0.0


def test_window_limits_one_member() -> None:
    """Without set_members the one-member window is alpha instances."""
    s = seq("a", ["a"], alpha=3, max_value=2000)
    for i in range(10):
        s.propose(bytes([i]) * 1200, 0.0)
    s.flush(0.0)
    assert [n for n, _ in s.take_decided()] == [1, 2, 3]
    assert s.next_wakeup() != 0.0  # blocked: no busy loop
    s.set_members(4, ["a"])
    s.flush(0.0)
    assert [n for n, _ in s.take_decided()] == [4]


# -- owner: one round trip ------------------------------------------------


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


def test_decided_on_quorum_of_accepted() -> None:
    """Its own vote plus one ACCEPTED of the same ballot and digest decide."""
    s = seq("b")
    s.propose(b"x", 0.0)
    s.flush(0.0)
    value = encode_batch([b"x"])
    s.receive("a", Accepted(1, (0, "b"), digest(value)), 0.001)
    assert s.take_decided() == [(1, [b"x"])]


def test_retransmits_identical_accept_until_decided() -> None:
    """After fill the same ACCEPT bytes go again to members that did not vote."""
    s = seq("b", fill=0.1)
    s.propose(b"x", 0.0)
    s.flush(0.0)
    first = sent(s, Accept)[0][1]
    s.receive("a", Accepted(1, (0, "b"), b"wrong-digest"), 0.01)
    s.tick(0.2)
    again = sent(s, Accept)
    assert again and all(m == first for _, m in again)
    s.receive("c", Accepted(1, (0, "b"), digest(first.value)), 0.21)
    s.tick(0.5)
    assert sent(s, Accept) == []


def test_pipelines_several_instances() -> None:
    """An owner proposes in its next instance before the previous is decided."""
    s = seq("b", max_value=2000)
    for i in range(3):
        s.propose(bytes([i]) * 1200, 0.0)
    s.flush(0.0)
    assert sorted({m.seqn for _, m in sent(s, Accept)}) == [1, 4, 7]


# -- acceptor ---------------------------------------------------------------


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


# -- rules 5 and 6 ------------------------------------------------------------


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


# -- learner and hand-out ------------------------------------------------------


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


# -- revocation ----------------------------------------------------------------


def _stuck_instance_1(s: Sequencer) -> None:
    # c's instance 2 is decided, b's instance 1 is open and b is silent.
    s.receive("c", Learn(2, NOOP), 0.0)


def test_open_instance_asked_for_before_revoked() -> None:
    """An instance others wait on is first asked for with WANT, then prepared."""
    s = seq("a", fill=0.1)
    _stuck_instance_1(s)
    times = [0.05 * i for i in range(1, 12)]
    kinds = []
    for t in times:
        s.tick(t)
        kinds += [type(m) for _, m in s.take_outbox()]
    assert Want in kinds and Prepare in kinds
    assert kinds.index(Want) < kinds.index(Prepare)


def test_revoker_proposes_noop_when_nothing_accepted() -> None:
    """With a quorum of empty promises the revoker proposes a no-op."""
    s = seq("a", fill=0.1)
    _stuck_instance_1(s)
    prepare = None
    t = 0.0
    while prepare is None and t < 2:
        t += 0.05
        s.tick(t)
        for _, m in s.take_outbox():
            if type(m) is Prepare and 1 in m.seqns:
                prepare = m
    assert prepare is not None and prepare.ballot[0] >= 1
    s.receive("c", Promise(prepare.ballot, ((1, None, None),)), t)
    accepts = [m for _, m in sent(s, Accept) if m.seqn == 1]
    assert accepts and accepts[0].value == NOOP and accepts[0].ballot == prepare.ballot


def test_revoker_adopts_accepted_value() -> None:
    """A value accepted by any promiser is proposed, not a no-op."""
    s = seq("a", fill=0.1)
    _stuck_instance_1(s)
    t = 0.0
    prepare = None
    while prepare is None:
        t += 0.05
        s.tick(t)
        prepare = next((m for _, m in s.take_outbox() if type(m) is Prepare), None)
    s.receive("c", Promise(prepare.ballot, ((1, (0, "b"), b"\x91\xa1v"),)), t)
    assert [m.value for _, m in sent(s, Accept) if m.seqn == 1] == [b"\x91\xa1v"] * 2


def test_revoked_items_reproposed_only_after_decision() -> None:
    """Own items whose instance is decided as a no-op are proposed again."""
    s = seq("b", fill=0.1)
    s.propose(b"x", 0.0)
    s.flush(0.0)
    s.take_outbox()
    s.tick(5.0)  # a long timeout alone never re-proposes
    assert {m.seqn for _, m in sent(s, Accept)} == {1}
    s.receive("a", Learn(1, NOOP), 5.1)
    s.flush(5.1)
    assert {m.seqn for _, m in sent(s, Accept)} == {4}
    assert s.counters["reproposed"] == 1


def test_nack_backs_off_then_prepares_higher() -> None:
    """A NACKed revoker retries later with a higher k."""
    s = seq("a", fill=0.1)
    _stuck_instance_1(s)
    t, prepare = 0.0, None
    while prepare is None:
        t += 0.05
        s.tick(t)
        prepare = next((m for _, m in s.take_outbox() if type(m) is Prepare), None)
    s.receive("c", Nack(1, (5, "c")), t)
    later = None
    for _ in range(40):
        t += 0.05
        s.tick(t)
        later = later or next((m for _, m in s.take_outbox() if type(m) is Prepare), None)
    assert later is not None and later.ballot[0] > 5


# -- floor, catch-up, install -----------------------------------------------------


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


def test_a_membership_change_skips_the_members_unused_instances() -> None:
    """The voting gap (issue 15, failure 3): when M changes at seqn t, every
    member skips its own unused instances below t at once, so the new
    membership counts after one round trip, not after alpha writes."""
    s = seq("a", alpha=10)
    s.set_members(11, ["a", "b", "c", "d"])
    s.flush(0.0)
    skips = [m for _, m in sent(s, Skip)]
    assert skips and all(m.owner == "a" and m.upto == 11 for m in skips)
    assert s.counters["membership_skips"] == 1
    for t in range(1, 11):
        if t % 3 == 0:
            assert t in s._decided
    same = seq("a", alpha=10)
    same.set_members(11, ABC)  # no change: nothing skipped
    same.flush(0.0)
    assert sent(same, Skip) == []
    outsider = seq("d", alpha=10)  # joins at 11: owns nothing before
    outsider.set_members(11, ["a", "b", "c", "d"])
    outsider.flush(0.0)
    assert sent(outsider, Skip) == []


def test_members_after_gives_the_snapshots_memberships() -> None:
    """members_after(s) is M(s+1 .. s+alpha), what a snapshot at s carries."""
    s = seq("a", alpha=3)
    assert s.members_after(0) == {1: ABC, 2: ABC, 3: ABC}
    with pytest.raises(LookupError):
        s.members_after(1)  # M(4) is not known yet
    s.set_members(4, ["a", "b"])
    assert s.members_after(1)[4] == ["a", "b"]


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


def test_set_members_changes_owners() -> None:
    """M(s+alpha) set after applying s decides who owns and votes."""
    s = seq("a", alpha=2)
    s.set_members(3, ["a", "b"])
    assert s.members(3) == ("a", "b") and s.is_member(3)
    s.set_members(3, ["x"])  # the first value wins
    assert s.counters["members_conflict"] == 1


def test_stats_report_last_heard() -> None:
    """Every message counts as a heartbeat in last_heard."""
    s = seq("a")
    s.receive("b", Ping(0, 0), 3.5)
    st = s.stats()
    assert st["last_heard"] == {"b": 3.5} and st["decided"] == 0 and st["member"]


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


def test_core_never_imports_twisted_internet() -> None:
    """The sans-I/O core loads without twisted.internet (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys, doozer.consensus.sequencer, doozer.consensus.messages; "
        "sys.exit(any(m.startswith('twisted.internet') for m in sys.modules))"
    )
    import os

    import doozer

    root = os.path.dirname(os.path.dirname(os.path.abspath(doozer.__file__)))
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_largest_write_fits_one_datagram() -> None:
    """A 60,000-byte body with its path is accepted, and its ACCEPT fits in a datagram."""
    from doozer.store import mutation
    from doozer.consensus.transport import MAX_DATAGRAM, UDPTransport

    item = mutation.set_("N" * 16, 1, "/" + "p" * 1000, b"v" * 60_000, until=2**40).encode()
    s = seq("b")
    s.propose(item, 0.0)
    s.flush(0.0)
    t = UDPTransport(cluster_name="c" * 64, cluster_id="i" * 32, node_id="b" * 64, deliver=print, key=b"k")
    for _, msg in s.take_outbox():
        assert len(t.frame(msg)) <= MAX_DATAGRAM
