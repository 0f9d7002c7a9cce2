"""The learner's side of the sequencer: deciding instances, handing them out
in seqn order, and the log of values handed out, kept to answer WANT.

A value is decided when a quorum of ACCEPTED votes names it (rule 3), or
when an ACCEPT, SKIP or LEARN says it was (:mod:`acceptor
<doozer.consensus.acceptor>`, :mod:`catchup <doozer.consensus.catchup>`).
It waits in the sequencer's ``_decided`` until every instance before it is
decided too; :meth:`DecidedLog.take` then hands the contiguous run out, in
order, and keeps each value in the log from which peers catching up are
answered. The log is bounded three ways (:meth:`DecidedLog.trim`): at least
``retain`` values, every value handed out within ``retain_seconds``, but
never more than about ``retain_bytes`` of them. Its **horizon**
(:attr:`DecidedLog.oldest`) is the oldest seqn still held: a WANT below it
is answered TOO_OLD, and the peer copies a snapshot.

A collaborator of :class:`~doozer.consensus.sequencer.Sequencer`, like the
proposer and the acceptor: it works on the sequencer's instances, window
and queue. The sequencer keeps ``_decided`` and ``_next_out`` itself (every
collaborator reads them on its hot path).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Optional

from doozer.consensus.messages import Accepted, Learn
from doozer.consensus.value import NOOP, MalformedValue, decode_batch

if TYPE_CHECKING:  # the sequencer holds this collaborator; typing only
    from doozer.consensus.sequencer import Sequencer

#: Most bytes of decided values kept to answer WANT (with
#: :data:`LOG_ENTRY_OVERHEAD` per value): the memory bound of the log, which
#: wins over ``retain`` and ``retain_seconds`` (1,000 values of the largest
#: size took as much before those existed).
RETAIN_BYTES = 64 * 1024 * 1024
#: What one kept value costs besides its bytes (dict slot, seqn, time).
LOG_ENTRY_OVERHEAD = 200


class DecidedLog:
    """The decisions and the kept log of one sequencer.

    :param seq: the sequencer it learns for.
    :param first_seqn: the first instance the sequencer will hand out.
    """

    def __init__(self, seq: "Sequencer", first_seqn: int) -> None:
        self._seq = seq
        #: handed out, kept for catch-up: seqn -> value
        self.log: dict[int, bytes] = {}
        #: the horizon: the oldest seqn the log holds (or will hold next)
        self.oldest = first_seqn
        self._at: deque[float] = deque()  # when each value in the log was handed out
        #: bytes the log holds, with LOG_ENTRY_OVERHEAD per value
        self.bytes = 0

    def value_of(self, s: int) -> Optional[bytes]:
        """The decided value of ``s``, handed out or not, if still known here."""
        v = self._seq._decided.get(s)
        return self.log.get(s) if v is None else v

    # -- learning ------------------------------------------------------------

    def decide(self, s: int, value: bytes, skip: bool = False) -> None:
        """``s`` is decided as ``value`` (``skip``: by its owner's SKIP)."""
        seq = self._seq
        if s < seq._next_out or s in seq._decided:
            return
        seq._decided[s] = value
        # by kind, for /metrics: its owner's SKIP, the empty batch otherwise
        # (revoked, or learned), or items
        seq._count("decided_skip" if skip else "decided_noop" if value == NOOP else "decided_value")
        inst = seq._instances.get(s)
        if inst is not None:
            inst.decided = True
            owner: Optional[str] = inst.owner
            if inst.phase is not None:
                inst.phase = None
                seq._coord.pop(s, None)
                if seq._observers:
                    seq._bcast(sorted(seq._observers), Learn(s, value))
            if inst.items is not None:
                seq._inflight -= 1
                seq._blocked = ""
                if value != inst.own_value:
                    # Rule 8: decided as something else (revoked): propose
                    # the items again, first in line. Only now, never on a
                    # timeout while the instance could still carry them.
                    seq._queue[:0] = inst.items
                    seq._count("reproposed", len(inst.items))
                    inst.items = None
        else:
            owner = seq._owner(s)
        if s > seq._frontier:
            seq._frontier = s
        # Rule 5: a decision in someone else's instance lets us skip below it.
        if owner is not None and owner != seq.node_id and s > seq._skip_upto:
            seq._skip_upto = s

    def on_accepted(self, sender: str, msg: Accepted, now: float) -> None:
        """A vote (rule 3): a quorum of them for one digest decides it."""
        seq = self._seq
        s = msg.seqn
        if s < seq._next_out or s in seq._decided:
            return
        inst = seq._inst(s)
        if inst is None:
            seq.catchup.beyond(sender, s)
            seq.early.hold(s, sender, msg)
            return
        if sender not in inst.members or not inst.valid_ballot(msg.ballot):
            seq._count("bad_accepted")
            return
        if inst.vote(sender, msg.ballot, msg.digest):
            value = inst.values.get(msg.digest)
            if value is not None:
                self.decide(s, value)
            else:
                # Chosen, but the ACCEPT has not reached us yet.
                inst.chosen_digest = msg.digest

    # -- handing out and keeping ---------------------------------------------

    def take(self) -> list[tuple[int, list[bytes]]]:
        """Decided instances not yet handed out, contiguous and in seqn order
        (:meth:`Sequencer.take_decided
        <doozer.consensus.sequencer.Sequencer.take_decided>`)."""
        seq = self._seq
        decided = seq._decided
        out = []
        while True:
            s = seq._next_out
            value = decided.pop(s, None)
            if value is None:
                break
            inst = seq._instances.pop(s, None)
            if inst is not None and inst.items is not None and value == inst.own_value:
                items = inst.items
            else:
                try:
                    items = decode_batch(value)
                except MalformedValue:
                    seq._count("malformed_value")
                    items = []
            self.log[s] = value
            self._at.append(seq._now)
            self.bytes += len(value) + LOG_ENTRY_OVERHEAD
            seq._members.pop(s, None)
            seq._next_out = s + 1
            if seq._forwarded:
                for item in items:
                    seq._forwarded.pop(item, None)
            out.append((s, items))
        if out:
            self.trim()
        return out

    def trim(self) -> None:
        """Forget the oldest handed-out values beyond what is kept: more than
        ``retain`` of them and older than ``retain_seconds``, or beyond
        ``retain_bytes`` in any case (the sequencer's settings, read at each
        call: the simulators shorten ``retain`` of a running sequencer)."""
        seq = self._seq
        log = self.log
        at = self._at
        old = seq._now - seq.retain_seconds
        while log and (
            self.bytes > seq.retain_bytes or (len(log) > seq.retain and at[0] <= old)
        ):
            value = log.pop(self.oldest)
            at.popleft()
            self.bytes -= len(value) + LOG_ENTRY_OVERHEAD
            self.oldest += 1

    def install(self, floor: int) -> None:
        """A snapshot made at ``floor`` is installed: what was handed out
        above it is to be handed out again (from the log, into ``_decided``),
        what is at or below it is dropped, and the log starts empty after
        it (:meth:`CatchUp.install <doozer.consensus.catchup.CatchUp.install>`,
        which moves ``_next_out`` to ``floor + 1``)."""
        seq = self._seq
        for s in range(floor + 1, seq._next_out):
            if s in self.log:  # installing behind what we handed out
                seq._decided[s] = self.log[s]
        seq._decided = {s: v for s, v in seq._decided.items() if s > floor}
        self.log = {}
        self.oldest = floor + 1
        self._at.clear()
        self.bytes = 0
