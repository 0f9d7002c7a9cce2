"""Durability (CONSENSUS.md §D): what must be on disk before which message.

A node that restarts under its old id answers for every promise and vote it
ever sent, so in durable mode the sequencer names the records that must be
written and fsynced first, and holds every message produced while such
records are unsynced until the node says they are safe. The sequencer stays
sans-I/O: the node drains :meth:`Durability.take_records`, writes them with
group commit, and calls ``Sequencer.synced(token, now)`` once they are
fsynced; only then do the held messages reach the outbox (or, addressed to
the node itself, its own handlers). :class:`Durability` is the sequencer's
durable mode: its collaborator (``seq.durable``), which all of the
sequencer's messages go through (:meth:`Durability.send`).

Records (each one small msgpack-able tuple, see :func:`encode_record`):

- :class:`PromiseRec` (D1): the acceptor promised ``ballot`` (``k >= 1``) in
  ``seqn``, before the PROMISE or a NACK that carries it.
- :class:`AcceptRec` (D2, D3): the acceptor accepted ``(ballot, value)`` in
  ``seqn``, before its ACCEPTED; for the owner's own ballot ``(0, self)``
  also before its ACCEPT leaves. A no-op accepted from the owner's SKIP is
  not recorded (D4 makes every value of that instance a no-op).
- :class:`SkipRec` (D4): the owner gave up its unused instances below
  ``upto``, before the SKIP that says so.
- :class:`FloorRec` (D7): acceptor records at or below ``floor`` may be
  dropped once this record is synced (snapshot install, garbage collection).
- :class:`ReserveRec` (the reservation ``R`` of §D): the owner uses ballot
  0 only at or below ``upto`` (this incarnation proposes nowhere else), and
  after a restart never at or below it. With ``R`` on disk, the owner's
  ACCEPT for an instance at or below it leaves before its own accept is
  durable; its own vote still counts only once it is (the ACCEPTED to
  itself waits like any other).

And one record that is no rule of §D: :class:`DecidedRec`, an instance's
decided value as the node applied it. "The decided log ... [is] written for
fast restarts, not for safety" (CONSENSUS.md §D): nothing waits for it (the
node writes it with its next batch, outside the tokens), and a restart
applies the run of decided instances after its snapshot at once instead of
deciding them again (a decision is final, so this node's own record of one
is as good as a peer's LEARN). Lost, it costs only time.

D5 needs no record: ballots ``(k, self)`` of incarnation ``i`` take ``k`` in
``((i - 1) * BALLOT_SPAN, i * BALLOT_SPAN]`` (:meth:`Durability.ballot_floor`).
D6 likewise: request ids of incarnation ``i`` start above
:func:`first_request_id` ``(i)``; the incarnation itself is the node's
identity file, bumped and fsynced before it sends anything.

:class:`Recovered` is what a restart rebuilds from the synced records.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple, Optional, Union

from doozer.consensus.instance import Instance
from doozer.consensus.messages import Accept, Learn, Message, Ping, TooOld, Want

if TYPE_CHECKING:  # the sequencer holds this collaborator; typing only
    from doozer.consensus.sequencer import Sequencer

__all__ = [
    "AcceptRec",
    "BALLOT_SPAN",
    "DecidedRec",
    "Durability",
    "FloorRec",
    "PromiseRec",
    "ReserveRec",
    "Record",
    "Recovered",
    "SkipRec",
    "compact",
    "decode_record",
    "encode_record",
    "first_request_id",
]

#: D5: the ballots ``k`` one incarnation may use (2**32 prepares each).
BALLOT_SPAN = 2**32
#: D6: the request ids one incarnation may use.
REQUEST_SPAN = 2**32


class PromiseRec(NamedTuple):
    """D1: promised ``ballot`` (``k >= 1``) in ``seqn``."""

    seqn: int
    ballot: tuple[Any, ...]


class AcceptRec(NamedTuple):
    """D2/D3: accepted ``(ballot, value)`` in ``seqn``."""

    seqn: int
    ballot: tuple[Any, ...]
    value: bytes


class SkipRec(NamedTuple):
    """D4: the owner's instances below ``upto`` are used or given up."""

    upto: int


class FloorRec(NamedTuple):
    """D7: acceptor state at or below ``floor`` is gone for good."""

    floor: int


class ReserveRec(NamedTuple):
    """The reservation ``R``: ballot 0 only at or below ``upto``."""

    upto: int


class DecidedRec(NamedTuple):
    """Not a rule: instance ``seqn`` was decided with ``items`` (its value's
    items, as applied), kept for a fast restart."""

    seqn: int
    items: list[bytes]


Record = Union[PromiseRec, AcceptRec, SkipRec, FloorRec, DecidedRec, ReserveRec]

_CODES: dict[type, int] = {PromiseRec: 1, AcceptRec: 2, SkipRec: 3, FloorRec: 4, DecidedRec: 5,
                           ReserveRec: 6}
_TYPES = {code: cls for cls, code in _CODES.items()}

#: Messages that reveal nothing an acceptor or owner must answer for later
#: (decided values, heartbeats, questions): they never wait for an fsync.
NEVER_WAIT: frozenset[type] = frozenset((Ping, Want, Learn, TooOld))


def encode_record(record: Record) -> tuple[Any, ...]:
    """A record as a plain tuple (code first) for msgpack."""
    return (_CODES[type(record)], *record)


def decode_record(data: Iterable[Any]) -> Record:
    """Inverse of :func:`encode_record` (msgpack gives lists or tuples)."""
    code, *fields = data
    cls = _TYPES[code]
    if not fields or type(fields[0]) is not int:
        # every record's first field is an instance number (seqn, upto, floor)
        raise TypeError("a record's instance number is an integer")
    if cls in (PromiseRec, AcceptRec):
        fields[1] = tuple(fields[1])
    elif cls is DecidedRec:
        items = fields[1]
        if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
            raise TypeError("a decided record's items are a list of byte strings")
    return cls(*fields)  # type: ignore[no-any-return]


def first_request_id(incarnation: int) -> int:
    """D6: request ids of ``incarnation`` are above this (incarnation 0, the
    memory-only mode, starts at 0 as before). A restarted node never reuses an
    id of an earlier incarnation, so the de-duplication record never takes a
    new request for an old one (and answers its writer with the old outcome)."""
    return incarnation * REQUEST_SPAN


class Recovered:
    """The durable consensus state a restart rebuilds from synced records.

    :param node_id: this node's id (its own accepts are those at ``(0, id)``).
    :param incarnation: the new incarnation (already bumped on disk).
    """

    def __init__(self, node_id: str, incarnation: int) -> None:
        self.node_id = node_id
        self.incarnation = incarnation
        self.floor = 0
        self.skip_horizon = 0
        self.own_accepted_upto = 0
        #: the highest reservation R on disk (0: none)
        self.reserved = 0
        #: seqn -> [promised or None, accepted ballot or None, accepted value]
        self.acceptors: dict[int, list[Any]] = {}
        #: seqn -> items of the instances recorded decided (above the floor)
        self.decided: dict[int, list[bytes]] = {}

    @classmethod
    def replay(cls, node_id: str, incarnation: int, records: Iterable[Record]) -> "Recovered":
        """Fold ``records`` (in the order they were written) into one state."""
        out = cls(node_id, incarnation)
        for record in records:
            out.add(record)
        return out

    def add(self, record: Record) -> None:
        """Fold one record in (idempotent, order-insensitive but for values:
        a higher accepted ballot replaces a lower one)."""
        t = type(record)
        if t is FloorRec:
            self.forget_upto(record.floor)  # type: ignore[union-attr]
            return
        if t is DecidedRec:
            if record.seqn > self.floor:  # type: ignore[union-attr]
                self.decided[record.seqn] = record.items  # type: ignore[union-attr]
            return
        if t is SkipRec:
            self.skip_horizon = max(self.skip_horizon, record.upto)  # type: ignore[union-attr]
            return
        if t is ReserveRec:
            self.reserved = max(self.reserved, record.upto)  # type: ignore[union-attr]
            return
        s = record.seqn  # type: ignore[union-attr]
        if s <= self.floor:
            return
        ballot = record.ballot  # type: ignore[union-attr]
        entry = self.acceptors.setdefault(s, [None, None, None])
        if entry[0] is None or ballot > entry[0]:
            entry[0] = ballot
        if t is AcceptRec and (entry[1] is None or ballot > entry[1]):
            entry[1] = ballot
            entry[2] = record.value  # type: ignore[union-attr]
            if ballot == (0, self.node_id) and s > self.own_accepted_upto:
                self.own_accepted_upto = s

    def used_below(self) -> int:
        """D3: the owner's own instances below this count as used: up to the
        highest with a durable own accept, its SKIP horizon, its floor; and
        up to its reservation R, at or below which it may have sent an
        ACCEPT whose own accept the crash lost (never ballot 0 there again)."""
        return max(self.own_accepted_upto + 1, self.skip_horizon, self.floor + 1, self.reserved + 1)

    def restore(self, inst: Instance) -> None:
        """Give a new instance of the window its durable acceptor state."""
        entry = self.acceptors.pop(inst.seqn, None)
        if entry is None:
            return
        promised, accepted, value = entry
        if promised is not None and promised > inst.promised:
            inst.promised = promised
        if accepted is not None:
            inst.accepted_ballot = accepted
            inst.accepted_value = value
            inst.note_value(value)
        inst.max_k = max(inst.max_k, inst.promised[0])

    def forget_upto(self, floor: int) -> None:
        """Acceptor state at or below ``floor`` is never needed (an install)."""
        if floor > self.floor:
            self.floor = floor
            self.acceptors = {s: a for s, a in self.acceptors.items() if s > floor}
            self.decided = {s: d for s, d in self.decided.items() if s > floor}

    def decided_after(self, seqn: int) -> list[tuple[int, list[bytes]]]:
        """The run of recorded decisions right after ``seqn``: ``seqn + 1``,
        ``seqn + 2``, ... up to the first instance not recorded."""
        out = []
        decided = self.decided
        s = seqn + 1
        while s in decided:
            out.append((s, decided[s]))
            s += 1
        return out


def compact(records: Iterable[Record], floor: int) -> list[Record]:
    """The records a node must keep once a floor of ``floor`` is synced (D7):
    everything but acceptor records (and decisions) at or below it, one
    skip horizon and one reservation."""
    kept: list[Record] = []
    horizon = 0
    reserved = 0
    top_floor = 0  # only a floor that was written: never invent one here
    for record in records:
        t = type(record)
        if t is SkipRec:
            horizon = max(horizon, record.upto)  # type: ignore[union-attr]
        elif t is ReserveRec:
            reserved = max(reserved, record.upto)  # type: ignore[union-attr]
        elif t is FloorRec:
            top_floor = max(top_floor, record.floor)  # type: ignore[union-attr]
        elif record.seqn > floor:  # type: ignore[union-attr]
            kept.append(record)
    if horizon:
        kept.append(SkipRec(horizon))
    if reserved:
        kept.append(ReserveRec(reserved))
    if top_floor:
        kept.append(FloorRec(top_floor))
    return kept


class Durability:
    """The durable mode of one sequencer: records out, held messages, tokens.

    A collaborator of :class:`~doozer.consensus.sequencer.Sequencer`, made
    before it (the node makes one per incarnation) and bound to it by
    :meth:`attach`; its record keeping works on its own (unit tests).

    Tokens count records: ``take_records`` returns the token of the last
    record it gives, and ``released(token)`` frees every message produced
    while records up to that token were unsynced, in the order they were
    produced. A message is tagged with the newest record's token when it is
    produced: it may reveal any record of its turn or an earlier one (a
    retransmitted ACCEPTED reveals an accept of an earlier turn), and order
    is kept because tags only grow.

    :param incarnation: this process's incarnation (D5, D6), >= 1.
    :param recovered: the state rebuilt at a restart, or None for a new node.
    """

    def __init__(self, incarnation: int = 1, recovered: Optional[Recovered] = None) -> None:
        if incarnation < 1:
            raise ValueError("a durable node's incarnation is >= 1")
        self.incarnation = incarnation
        self.recovered = recovered
        self._records: list[Record] = []
        self._emitted = 0  # token of the newest record
        self._synced = 0  # token up to which everything is durable
        self.held: deque[tuple[int, str, Message]] = deque()
        self.floor = 0 if recovered is None else recovered.floor
        #: the floor whose record is synced: acceptor records at or below it
        #: may be deleted (D7)
        self.collectable = self.floor
        self._floors: deque[tuple[int, int]] = deque()  # (token, floor) not yet synced
        #: the reservation R on disk: the owner's ACCEPTs at or below it
        #: leave before its own accept is durable. A restarted node starts
        #: with none: it never uses ballot 0 at or below the old one.
        self.reserved = 0
        self._reserving = 0 if recovered is None else recovered.reserved  # the highest recorded
        self._reserves: deque[tuple[int, int]] = deque()  # (token, R) not yet synced
        self._reserve_step = 0  # how far past its instance the last R reached

    #: the sequencer whose durable mode this is (set by :meth:`attach`)
    seq: "Sequencer"

    def attach(self, seq: "Sequencer") -> None:
        """Become the durable mode of ``seq`` (which sends through
        :meth:`send`); after a restart, pick up where the records left off."""
        self.seq = seq
        recovered = self.recovered
        if recovered is not None:
            # D3: every own instance up to the highest durable own accept,
            # the SKIP horizon or the floor counts as used.
            seq._cursor = max(seq._cursor, recovered.used_below())
            if recovered.acceptors:
                # Instances with durable acceptor state were proposed before
                # the restart, and nobody may be proposing them now (a
                # one-member cluster, or a whole cluster restarted): wait on
                # them, and revoke them if need be, as if a later instance
                # had been seen proposed. Otherwise they stay open until the
                # next new write.
                top = max(recovered.acceptors) + 1
                seq._frontier = max(seq._frontier, top)
            if recovered.reserved:
                # Own instances up to R may hold an ACCEPT the crash
                # forgot (and peers' votes for it), and this node proposes
                # there at ballot 0 no more: wait on them and revoke them
                # if need be, as above. (Its next write goes above R.)
                seq._frontier = max(seq._frontier, recovered.reserved + 1)

    def send(self, dest: str, message: Message) -> None:
        """The sequencer's ``_send`` in durable mode: what :meth:`waits` is
        held until its records are synced, the rest goes at once.

        The owner's own ACCEPT to itself (ballot ``(0, self)``) is handled
        by its own acceptor here and now (D3): the accept is recorded
        before the same ACCEPT is produced for the others, which therefore
        waits for that record's fsync, unless the instance is at or below
        the reservation R on disk (:meth:`reserve`): then it goes at once.
        An ACCEPT is no vote: the ACCEPTED it provokes is what waits, the
        one to this node itself included."""
        seq = self.seq
        if type(message) is Accept and message.ballot == (0, seq.node_id):
            if dest == seq.node_id:
                seq.acceptor.on_accept(dest, message, seq._now)
                return
            if message.seqn <= self.reserved:
                # R is on disk: the ACCEPT goes while its own accept is
                # being written (its own vote waits for that).
                seq._deliver(dest, message)
                return
        if self.waits(dest, message):
            self.hold(dest, message)
        else:
            seq._deliver(dest, message)

    def waits(self, dest: str, message: Message) -> bool:
        """Whether ``message`` must wait for records: any produced while
        records are unsynced waits for them, in order; decided values,
        heartbeats and questions never wait. So does a message to this node
        itself: its own PROMISE or ACCEPTED counted before its record is
        durable could decide a value that a crash then forgets."""
        return self.unsynced and type(message) not in NEVER_WAIT

    def synced(self, token: int, now: float) -> None:
        """Every record up to ``token`` is on disk. The messages held for
        them go to the outbox (or, when addressed to this node, to its own
        handlers: its own vote counts only now)."""
        seq = self.seq
        seq._now = now
        for dest, message in self.released(token):
            seq._deliver(dest, message)
        seq._drain_local(now)

    @property
    def unsynced(self) -> bool:
        """Whether records exist that are not yet durable."""
        return self._emitted > self._synced

    def reserve(self, seqn: int, upto: int) -> None:
        """The owner is about to propose in ``seqn``: keep the reservation R
        ahead of it. When less than half of what the last one reserved
        past its time is left, reserve up to ``upto`` (a record like any
        other; the ACCEPTs it covers go early once it is synced)."""
        if seqn + (self._reserve_step // 2) > self._reserving and upto > self._reserving:
            self._reserve_step = upto - seqn
            self._reserving = upto
            self._record_pending(ReserveRec(upto), self._reserves, upto)

    def record(self, record: Record) -> None:
        """A record that must be durable before what is produced next leaves."""
        self._records.append(record)
        self._emitted += 1

    def _record_pending(self, record: Record, pending: deque[tuple[int, int]], value: int) -> None:
        """Record ``record``; ``value`` takes effect once it is synced
        (:func:`_synced_upto` in :meth:`released`)."""
        self.record(record)
        pending.append((self._emitted, value))

    def take_records(self) -> tuple[int, list[Record]]:
        """The records to write, and the token to call ``synced`` with once
        they (and all earlier ones) are fsynced."""
        out, self._records = self._records, []
        return self._emitted, out

    def hold(self, dest: str, message: Message) -> None:
        self.held.append((self._emitted, dest, message))

    def released(self, token: int) -> list[tuple[str, Message]]:
        """Records up to ``token`` are durable: the messages that may go now."""
        if token > self._emitted:
            raise ValueError(f"token {token} was never given out")
        if token <= self._synced:
            return []
        self._synced = token
        self.collectable = _synced_upto(self._floors, token, self.collectable)
        self.reserved = _synced_upto(self._reserves, token, self.reserved)
        held = self.held
        out = []
        while held and held[0][0] <= token:
            _, dest, message = held.popleft()
            out.append((dest, message))
        return out

    def raise_floor(self, floor: int) -> None:
        """D7: acceptor state at or below ``floor`` will be dropped."""
        if floor <= self.floor:
            return
        self.floor = floor
        if self.recovered is not None:
            self.recovered.forget_upto(floor)
        self._record_pending(FloorRec(floor), self._floors, floor)

    def ballot_floor(self) -> int:
        """D5: the lowest ``k - 1`` this incarnation may use in ``(k, self)``."""
        return (self.incarnation - 1) * BALLOT_SPAN


def _synced_upto(pending: deque[tuple[int, int]], token: int, current: int) -> int:
    """``current`` raised to the values of ``pending`` (token, value) whose
    records are synced once everything up to ``token`` is; those leave it."""
    while pending and pending[0][0] <= token:
        current = max(current, pending.popleft()[1])
    return current
