"""The invariants both simulators check, on what the product itself computes.

CONSENSUS.md, "What the simulation tests check": a checker only counts if it
sees what production does. So everything here is read off the nodes' own
objects as they run: the acceptors' state in each node's sequencer, the
values each node hands out and applies with the product's :class:`Store`
(whose de-duplication record is the bounded one production uses), and
``M(s)`` as each node's sequencer holds it (set from its own store's CAL, or
from a snapshot made by :class:`doozer.node.replica.Replica`). The checker's own
memory is unbounded on purpose: it must see a request applied twice however
far apart.

- **Agreement on chosen values**: whenever a quorum of ``M(s)`` has accepted
  one ballot's value, that is the value every node decides for ``s``; two
  acceptors never accept different values for one ballot; every acceptor's
  promise is at least the ballot it accepted.
- **One log**: every node hands out the same value at each seqn.
- **No request applied twice**: no ``(origin, request)`` takes a rev in two
  instances (a duplicate refused by the product's record takes none).
- **One membership**: ``M(s)`` is the same on every node that holds it.
"""

from __future__ import annotations

from typing import Any, Callable

from doozer.consensus.instance import digest
from doozer.consensus.value import encode_batch


class Checker:
    """Collects what the nodes did and fails at the first inconsistency.

    :param fail: called with a description; must raise.
    """

    def __init__(self, fail: Callable[[str], Any]) -> None:
        self.fail = fail
        self.chosen: dict[int, bytes] = {}  # seqn -> digest a quorum accepted
        self.accepted: dict[tuple[int, tuple], dict[str, bytes]] = {}  # (s, b) -> acceptor -> digest
        self.decided: dict[int, bytes] = {}  # seqn -> digest handed out
        self.log: dict[int, tuple] = {}  # seqn -> items handed out
        self.applied_at: dict[tuple[str, int], int] = {}  # key -> seqn where it took a rev
        self.members: dict[int, tuple] = {}  # seqn -> M(s)

    def observe(self, node_id: str, seq: Any, votes: bool = True) -> None:
        """Read the acceptor state of every open instance of ``seq``.

        :param votes: count its accepts as votes. A durable node's accepts
            count only once they are revealed (an ACCEPTED sent) or durable
            (their record synced): one in memory only is forgotten by a
            crash exactly as if it never happened (:meth:`vote`).
        """
        for inst in seq._instances.values():
            ballot = inst.accepted_ballot
            if ballot is None:
                continue
            if inst.promised < ballot:
                self.fail(f"{node_id} promised {inst.promised} below its accepted {ballot} at {inst.seqn}")
            if votes:
                self.vote(node_id, inst.seqn, ballot, digest(inst.accepted_value), inst.members)

    def vote(self, node_id: str, seqn: int, ballot: tuple, d: bytes, members: Any) -> None:
        """``node_id`` accepted the value of digest ``d`` at ``ballot`` in ``seqn``."""
        votes = self.accepted.setdefault((seqn, ballot), {})
        old = votes.get(node_id)
        if old is not None:
            if old != d:
                self.fail(f"{node_id} accepted two values at ballot {ballot} of {seqn}")
            return
        if votes and d not in votes.values():
            self.fail(f"two values accepted at ballot {ballot} of {seqn}")
        votes[node_id] = d
        if members and node_id in members and sum(1 for a in votes if a in members) >= len(members) // 2 + 1:
            self._chose(seqn, d)

    def _chose(self, seqn: int, d: bytes) -> None:
        known = self.chosen.setdefault(seqn, d)
        if known != d:
            self.fail(f"two values chosen at {seqn}")
        decided = self.decided.get(seqn)
        if decided is not None and decided != d:
            self.fail(f"{seqn} decided with a value other than the one a quorum accepted")

    def handed_out(self, node_id: str, seqn: int, items: list) -> None:
        """A node handed out ``items`` as instance ``seqn``."""
        batch = tuple(items)
        known = self.log.setdefault(seqn, batch)
        if known != batch:
            self.fail(f"disagreement at {seqn}: {node_id} decided another value")
        d = digest(encode_batch(list(items)))
        self.decided.setdefault(seqn, d)
        chosen = self.chosen.get(seqn)
        if chosen is not None and chosen != d:
            self.fail(f"{node_id} decided {seqn} with a value other than the one a quorum accepted")

    def applied(self, node_id: str, seqn: int, outcomes: list) -> None:
        """``outcomes`` of applying instance ``seqn`` on ``node_id``."""
        for outcome in outcomes:
            if not outcome.took_rev or not outcome.key[0]:
                continue
            first = self.applied_at.setdefault(outcome.key, seqn)
            if first != seqn:
                self.fail(
                    f"request {outcome.key} applied at {seqn} on {node_id}, and at {first}"
                )

    def membership(self, node_id: str, seqn: int, members: Any) -> None:
        """``node_id`` holds ``M(seqn) = members``."""
        if members is None:
            return
        m = tuple(members)
        known = self.members.setdefault(seqn, m)
        if known != m:
            self.fail(f"M({seqn}) differs: {known} elsewhere, {m} on {node_id}")

    def window(self, node_id: str, seq: Any) -> None:
        """Every ``M(s)`` ``seq`` holds (its whole window)."""
        for s, m in list(seq._members.items()):
            self.membership(node_id, s, m)
