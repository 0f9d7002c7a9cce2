"""One Paxos instance: acceptor, learner and coordinator state for one seqn.

Pure data and pure decisions; the :class:`~doozer.consensus.sequencer.Sequencer`
turns the results into messages. Rule numbers refer to ``CONSENSUS.md``.
"""

from __future__ import annotations

import hashlib
from typing import Optional

from doozer.consensus.messages import Ballot
from doozer.consensus.value import NOOP

__all__ = ["NOOP", "Instance", "digest"]

# Coordinator phases (None = this node does not coordinate the instance).
PROPOSING = "proposing"  # owner, ballot (0, self), phase 2 only (rule 4)
PREPARING = "preparing"  # revoker, phase 1 sent (rule 7)
ACCEPTING = "accepting"  # revoker, phase 2 sent with the adopted value
PARKED = "parked"  # revoker, phase 1 done, a no-op adopted: phase 2 once waited on
BACKOFF = "backoff"  # revoker, NACKed; retries at retry_at with a higher k


def digest(value: bytes) -> bytes:
    """The digest ACCEPTED messages carry instead of the value."""
    return hashlib.blake2b(value, digest_size=16).digest()


class Instance:
    """State of one single-decree Paxos instance ``seqn``.

    :param seqn: the instance number.
    :param members: ``M(seqn)``, the voters, in CAL order.
    """

    __slots__ = (
        "seqn",
        "members",
        "quorum",
        "owner",
        # acceptor
        "promised",
        "accepted_ballot",
        "accepted_value",
        # learner
        "votes",
        "values",
        "chosen_digest",
        "decided",
        # coordinator (owner proposing, or revoker)
        "phase",
        "ballot",
        "value",
        "value_digest",
        "items",
        "own_value",
        "promises",
        "sent_at",
        "backoff",
        "retry_at",
        "nacked",
        "max_k",
        # revocation bookkeeping
        "open_since",
        "wanted_at",
        "revoke_after",
    )

    def __init__(self, seqn: int, members: tuple[str, ...]) -> None:
        self.seqn = seqn
        self.members = members
        self.quorum = len(members) // 2 + 1
        self.owner: str = members[seqn % len(members)]
        # Every acceptor implicitly promised the owner's ballot (0, owner).
        self.promised: Ballot = (0, self.owner)
        self.accepted_ballot: Optional[Ballot] = None
        self.accepted_value: Optional[bytes] = None
        self.votes: dict[tuple[Ballot, bytes], set[str]] = {}
        self.values: dict[bytes, bytes] = {}
        self.chosen_digest: Optional[bytes] = None
        self.decided = False
        self.phase: Optional[str] = None
        self.ballot: Optional[Ballot] = None
        self.value: Optional[bytes] = None
        self.value_digest: Optional[bytes] = None
        self.items: Optional[list[bytes]] = None  # own proposal: the items it carries
        self.own_value: Optional[bytes] = None
        self.promises: dict[str, tuple[Optional[Ballot], Optional[bytes]]] = {}
        self.sent_at = 0.0
        self.backoff = 0.0
        self.retry_at = 0.0
        self.nacked = False
        self.max_k = 0
        self.open_since: Optional[float] = None
        self.wanted_at: Optional[float] = None
        self.revoke_after = 0.0

    # -- validity -------------------------------------------------------

    def valid_ballot(self, ballot: Ballot) -> bool:
        """Rule 2: ``(0, x)`` is only valid for the owner of this instance."""
        return ballot[0] > 0 or ballot[1] == self.owner

    # -- acceptor (rules 1-3) -------------------------------------------

    def prepare(self, ballot: Ballot) -> bool:
        """Rule 1: promise ``ballot`` if it is at least the promised one.

        :returns: True to reply PROMISE (with the accepted pair), False to NACK.
        """
        if ballot[0] > self.max_k:
            self.max_k = ballot[0]
        if ballot > self.promised:
            self.promised = ballot
            return True
        return ballot == self.promised

    def accept(self, ballot: Ballot, value: bytes) -> Optional[bool]:
        """Rule 2: accept ``(ballot, value)`` unless a higher ballot was promised.

        Accepting again at the same ballot is a repeat (the proposer proposes
        one value per ballot), so a retransmission is answered identically.

        :returns: True to broadcast ACCEPTED, False to NACK, None to ignore
            (a different value at an already accepted ballot: never valid).
        """
        if ballot[0] > self.max_k:
            self.max_k = ballot[0]
        if ballot < self.promised:
            return False
        if self.accepted_ballot == ballot:
            # Already accepted at b: repeat, never replace (one value per ballot).
            return True if self.accepted_value == value else None
        self.promised = ballot
        self.accepted_ballot = ballot
        self.accepted_value = value
        return True

    def skip(self) -> bool:
        """Rule 3: the owner declared this instance a no-op.

        :returns: True when the acceptor recorded the no-op as accepted.
        """
        if self.promised == (0, self.owner) and self.accepted_ballot is None:
            self.accepted_ballot = self.promised
            self.accepted_value = NOOP
            return True
        return False

    # -- learner ---------------------------------------------------------

    def note_value(self, value: bytes) -> bytes:
        """Remember a value seen in an ACCEPT so its digest can be resolved."""
        d = digest(value)
        self.values[d] = value
        return d

    def vote(self, sender: str, ballot: Ballot, value_digest: bytes) -> bool:
        """Count an ACCEPTED; True exactly when this vote makes a quorum.

        Votes count only per identical (ballot, digest) and only from
        members of this instance (the caller checks membership).
        """
        key = (ballot, value_digest)
        voters = self.votes.get(key)
        if voters is None:
            voters = self.votes[key] = set()
        if sender in voters:
            return False
        voters.add(sender)
        return len(voters) == self.quorum

    def voters(self, ballot: Ballot, value_digest: bytes) -> set[str]:
        """Members that sent ACCEPTED for exactly this ballot and digest."""
        return self.votes.get((ballot, value_digest), set())

    # -- coordinator (rule 7) ----------------------------------------------

    def promise_from(self, sender: str, ballot: Optional[Ballot], value: Optional[bytes]) -> bool:
        """Count a PROMISE for our current ballot; True when it makes a quorum."""
        if sender in self.promises:
            return False
        self.promises[sender] = (ballot, value)
        return len(self.promises) == self.quorum

    def adopted_value(self) -> bytes:
        """The value of the highest accepted ballot among the promises, else a no-op."""
        best: Optional[Ballot] = None
        value = NOOP
        for ballot, accepted in self.promises.values():
            # A ballot always comes with its value (checked on receipt).
            if ballot is not None and accepted is not None and (best is None or ballot > best):
                best, value = ballot, accepted
        return value
