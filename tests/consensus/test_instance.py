"""One Paxos instance: the acceptor rules, the learner's quorum, the revoker's choice."""

from __future__ import annotations

from doozer.consensus.instance import NOOP, Instance, digest

MEMBERS = ("a", "b", "c")


def inst(seqn: int = 1) -> Instance:
    """Instance 1 is owned by M[1 % 3] = "b"."""
    return Instance(seqn, MEMBERS)


def test_owner_is_member_at_seqn_mod_n() -> None:
    """The owner of s is M(s)[s mod n]."""
    assert [Instance(s, MEMBERS).owner for s in range(1, 5)] == ["b", "c", "a", "b"]


def test_owner_ballot_is_implicitly_promised() -> None:
    """An acceptor accepts the owner's (0, owner) ballot without a prepare."""
    i = inst()
    assert i.accept((0, "b"), b"v") is True
    assert (i.accepted_ballot, i.accepted_value) == ((0, "b"), b"v")


def test_zero_ballot_of_non_owner_invalid() -> None:
    """Only the owner may use k = 0."""
    i = inst()
    assert not i.valid_ballot((0, "a"))
    assert i.valid_ballot((0, "b")) and i.valid_ballot((1, "a"))


def test_prepare_higher_promises() -> None:
    """A higher ballot is promised; an equal one is promised again."""
    i = inst()
    assert i.prepare((1, "a"))
    assert i.promised == (1, "a")
    assert i.prepare((1, "a"))


def test_prepare_lower_nacks() -> None:
    """A ballot below the promised one is refused."""
    i = inst()
    i.prepare((2, "a"))
    assert not i.prepare((1, "c"))
    assert i.promised == (2, "a")


def test_accept_below_promise_nacks() -> None:
    """After promising (1, a) the owner's (0, b) ACCEPT is refused."""
    i = inst()
    i.prepare((1, "a"))
    assert i.accept((0, "b"), b"v") is False
    assert i.accepted_ballot is None


def test_repeated_accept_is_answered_again() -> None:
    """A retransmitted identical ACCEPT is accepted again (to resend ACCEPTED)."""
    i = inst()
    i.accept((0, "b"), b"v")
    assert i.accept((0, "b"), b"v") is True


def test_other_value_at_same_ballot_ignored() -> None:
    """A different value at an already accepted ballot never replaces it."""
    i = inst()
    i.accept((0, "b"), b"v")
    assert i.accept((0, "b"), b"w") is None
    assert i.accepted_value == b"v"


def test_skip_accepts_noop_only_when_untouched() -> None:
    """SKIP is an implicit no-op ACCEPT only while nothing was promised or accepted."""
    i = inst()
    assert i.skip() and i.accepted_value == NOOP
    j = inst()
    j.prepare((1, "a"))
    assert not j.skip()
    k = inst()
    k.accept((0, "b"), b"v")
    assert not k.skip() and k.accepted_value == b"v"


def test_quorum_needs_same_ballot_and_digest() -> None:
    """Votes for different ballots or digests do not add up."""
    i = inst()
    d = digest(b"v")
    assert not i.vote("a", (0, "b"), d)
    assert not i.vote("c", (1, "a"), d)
    assert not i.vote("c", (0, "b"), digest(b"w"))
    assert i.vote("c", (0, "b"), d)


def test_duplicate_vote_counts_once() -> None:
    """The same member voting twice is one vote."""
    i = inst()
    d = digest(b"v")
    i.vote("a", (0, "b"), d)
    assert not i.vote("a", (0, "b"), d)


def test_quorum_reported_exactly_once() -> None:
    """The vote that makes the quorum returns True; later ones do not."""
    i = inst()
    d = digest(b"v")
    results = [i.vote(m, (0, "b"), d) for m in MEMBERS]
    assert results == [False, True, False]


def test_revoker_adopts_highest_accepted() -> None:
    """Among the promises, the value of the highest accepted ballot wins."""
    i = inst()
    i.promise_from("a", (0, "b"), b"old")
    i.promise_from("c", (2, "c"), b"new")
    assert i.adopted_value() == b"new"


def test_revoker_proposes_noop_when_nothing_accepted() -> None:
    """Promises with nothing accepted make the revoker propose a no-op."""
    i = inst()
    i.promise_from("a", None, None)
    assert i.promise_from("c", None, None)
    assert i.adopted_value() == NOOP
