"""The durable mode with rules of CONSENSUS.md §D dropped, for the tests
that show the simulation catches each one (tests/consensus/test_durable.py,
docs/testing.md "Each rule dropped").

The product has no switch for this: :class:`UnsafeDurability` is a
test-side subclass of :class:`~doozer.consensus.durable.Durability` that
overrides the one place each rule lives (a record not made, a message not
held, a floor not written, a ballot range not kept). D6 (request ids) is
the simulator's own (``Sim._first_request``).
"""

from __future__ import annotations

from typing import Optional

from doozer.consensus import durable as dur
from doozer.consensus.messages import Accept, Message

#: What may be dropped: the rules, "own-vote" (messages to the node itself
#: go at once, so its own vote counts before its record is durable), and
#: the two halves of the reservation R: "R" (a restart forgets the durable
#: R: ballot 0 again at or below it) and "R-sync" (R counts as soon as it
#: is recorded, before it is synced).
RULES = frozenset(("D1", "D2", "D3", "D4", "D5", "D6", "D7", "own-vote", "R", "R-sync"))


class UnsafeDurability(dur.Durability):
    """A :class:`~doozer.consensus.durable.Durability` that breaks the rules
    named in ``dropped``.

    :param dropped: names from :data:`RULES`.
    """

    def __init__(
        self, incarnation: int, recovered: Optional[dur.Recovered], dropped: frozenset[str]
    ) -> None:
        super().__init__(incarnation, recovered)
        unknown = dropped - RULES
        if unknown:
            raise ValueError(f"no such rule to drop: {sorted(unknown)}")
        self.dropped = dropped
        if "R" in dropped and recovered is not None:
            recovered.reserved = 0  # the restart honours no reservation

    def reserve(self, seqn: int, upto: int) -> None:
        super().reserve(seqn, upto)
        if "R-sync" in self.dropped:
            self.reserved = self._reserving

    def record(self, record: dur.Record) -> None:
        t = type(record)
        dropped = self.dropped
        if (
            (t is dur.PromiseRec and "D1" in dropped)
            # D2: the acceptor's accepts but the owner's own (D3's) are not recorded
            or (t is dur.AcceptRec and "D2" in dropped and record.ballot != (0, self.seq.node_id))  # type: ignore[union-attr]
            or (t is dur.SkipRec and "D4" in dropped)
        ):
            return
        super().record(record)

    def waits(self, dest: str, message: Message) -> bool:
        dropped = self.dropped
        if dest == self.seq.node_id and "own-vote" in dropped:
            return False
        if "D3" in dropped and type(message) is Accept and message.ballot[0] == 0:
            return False  # the owner's ACCEPT leaves before its own accept is durable
        return super().waits(dest, message)

    def raise_floor(self, floor: int) -> None:
        if "D7" not in self.dropped:
            super().raise_floor(floor)
            return
        if floor <= self.floor:
            return
        self.floor = floor
        if self.recovered is not None:
            self.recovered.forget_upto(floor)
        self.collectable = floor  # records dropped at once, the floor never written

    def ballot_floor(self) -> int:
        if "D5" in self.dropped:
            return 0  # k from what was seen since the restart only
        return super().ballot_floor()
