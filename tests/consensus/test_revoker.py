"""The revoker (doozer/consensus/revoker.py): the coordinator's
retransmissions; full Paxos for an instance others wait on (asked for with
WANT first, then prepared; a no-op or the value already accepted; back-off
after a NACK); and revoking a silent owner's turns ahead: phase 1 at once,
phase 2 only once someone waits on the turn (parked no-ops), so the log
cannot run away.

Genesis ``a, b, c``: instance s is owned by ``M[s % 3]``, so ``b`` owns
1, 4, 7 ..., ``c`` owns 2, 5, 8 ... and ``a`` owns 3, 6, 9 ...; the window
is 1..50. ``c`` is silent; ``a`` is the first member after it, so ``a``
revokes its turns.
"""

from __future__ import annotations

import random

from sequtil import seq, sent

from doozer.consensus import NOOP
from doozer.consensus.instance import PARKED, digest
from doozer.consensus.messages import (
    Accept,
    Accepted,
    Learn,
    Nack,
    Ping,
    Prepare,
    Promise,
    Skip,
    Want,
)
from doozer.consensus.sequencer import Sequencer
from doozer.consensus.value import encode_batch

V = encode_batch([b"x"])


def accepts(s: Sequencer) -> dict[int, bytes]:
    """seqn -> value of every ACCEPT in the outbox (a's own ballots only)."""
    return {m.seqn: m.value for _, m in s.take_outbox() if type(m) is Accept and m.ballot[1] == "a"}


def revoking_c() -> tuple[Sequencer, Prepare, float]:
    """b wrote in 4 (and skipped 1); c said nothing: a asks for 2, then
    prepares c's whole share of the window. Returns the PREPARE."""
    s = Sequencer("a", genesis=["a", "b", "c"], rng=random.Random(0), fill=0.1)
    s.receive("b", Skip("b", 1, 2), 0.0)
    s.receive("b", Accept(4, (0, "b"), V), 0.0)
    t, prepare = 0.0, None
    while prepare is None:
        t += 0.05
        s.receive("b", Ping(0, 4), t)  # b stays heard from
        s.tick(t)
        prepare = next((m for _, m in s.take_outbox() if type(m) is Prepare), None)
        assert t < 2, "c's turns were never prepared"
    assert set(prepare.seqns) >= set(range(2, 51, 3)), prepare.seqns
    return s, prepare, t


def promise_all(s: Sequencer, prepare: Prepare, t: float) -> None:
    s.receive("b", Promise(prepare.ballot, tuple((x, None, None) for x in prepare.seqns)), t)


def test_only_turns_below_a_proposal_get_phase_2() -> None:
    """2 is below b's proposal in 4: its no-op goes out. c's later turns
    are promised too, but nobody waits on them: no ACCEPT, no decision."""
    s, prepare, t = revoking_c()
    promise_all(s, prepare, t)
    s.flush(t)
    sent = accepts(s)
    assert sent == {2: NOOP}
    for x in range(5, 51, 3):
        assert s._instances[x].phase == PARKED and x not in s._decided


def test_a_later_proposal_releases_the_turns_below_it() -> None:
    s, prepare, t = revoking_c()
    promise_all(s, prepare, t)
    s.flush(t)
    s.take_outbox()
    s.receive("b", Accept(13, (0, "b"), V), t)
    s.flush(t)
    assert accepts(s) == {5: NOOP, 8: NOOP, 11: NOOP}


def test_own_requests_release_the_turns_below_them() -> None:
    """a's own write goes into its next turn (6, after 3 was skipped below
    b's 4): c's 5 below it is released, nothing above."""
    s, prepare, t = revoking_c()
    promise_all(s, prepare, t)
    s.flush(t)
    s.take_outbox()
    s.propose(b"mine", t)
    s.flush(t)
    sent = accepts(s)
    own = [x for x, v in sent.items() if v != NOOP]
    assert own and all(x % 3 == 0 for x in own)
    assert {x for x, v in sent.items() if v == NOOP} == {x for x in range(5, max(own), 3)}


def test_an_accepted_value_is_never_parked() -> None:
    """A promise that reports a value accepted in c's 8 (c proposed before
    it went silent): that value may be chosen, so it is proposed at once,
    and 5, below it, is then waited on too."""
    s, prepare, t = revoking_c()
    entries = tuple((x, (0, "c"), V) if x == 8 else (x, None, None) for x in prepare.seqns)
    s.receive("b", Promise(prepare.ballot, entries), t)
    s.flush(t)
    assert accepts(s) == {2: NOOP, 5: NOOP, 8: V}


def test_the_owner_speaking_again_releases_its_turns() -> None:
    """c is back: it should find its turns decided, not fight a's promises."""
    s, prepare, t = revoking_c()
    promise_all(s, prepare, t)
    s.flush(t)
    s.take_outbox()
    t += 0.05
    s.receive("c", Ping(1, 4), t)
    s.tick(t + 1.0)  # long after the last write: idle, yet c's turns go
    assert set(accepts(s)) - {2} == set(range(5, 51, 3))  # (2: resent)


def test_a_parked_instance_is_not_retransmitted() -> None:
    s, prepare, t = revoking_c()
    promise_all(s, prepare, t)
    s.flush(t)
    s.take_outbox()
    for i in range(1, 6):
        s.receive("b", Ping(0, 4), t + 0.1 * i)
        s.tick(t + 0.1 * i)
    out = s.take_outbox()
    assert not [m for _, m in out if type(m) is Accept and m.seqn > 4]
    assert not [m for _, m in out if type(m) is Prepare and set(m.seqns) & set(range(5, 51, 3))]


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

