"""Revoking a silent owner's turns ahead: phase 1 at once, phase 2 only
once someone waits on the turn (parked no-ops), so the log cannot run away.

Genesis ``a, b, c``: instance s is owned by ``M[s % 3]``, so ``b`` owns
1, 4, 7 ..., ``c`` owns 2, 5, 8 ... and ``a`` owns 3, 6, 9 ...; the window
is 1..50. ``c`` is silent; ``a`` is the first member after it, so ``a``
revokes its turns.
"""

from __future__ import annotations

import random

from doozer.consensus import NOOP
from doozer.consensus.instance import PARKED
from doozer.consensus.messages import Accept, Ping, Prepare, Promise, Skip
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
