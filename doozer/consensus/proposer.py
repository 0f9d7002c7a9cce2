"""The owner's side of the sequencer: cutting queued items into its own
instances (rule 4) and skipping the instances it will not use (rules 5-6).
Rule numbers refer to CONSENSUS.md.

A collaborator of :class:`~doozer.consensus.sequencer.Sequencer`, like the
acceptor and the revoker: it works on the sequencer's queue, cursor and
window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from doozer.consensus.durable import SkipRec
from doozer.consensus.instance import PROPOSING
from doozer.consensus.messages import ENVELOPE_OVERHEAD, ITEM_OVERHEAD, Accept, Skip
from doozer.consensus.value import encode_batch

if TYPE_CHECKING:  # the sequencer holds this collaborator; typing only
    from doozer.consensus.sequencer import Sequencer


class Proposer:
    """The owner's proposals and skips of one sequencer.

    :param seq: the sequencer whose instances it owns.
    """

    def __init__(self, seq: "Sequencer") -> None:
        self._seq = seq
        #: the node is leaving (SPEC §11, SIGTERM): once its queue is cut it
        #: gives up every own instance of the window it has not proposed in
        #: (:meth:`hand_off`)
        self.handing_off = False
        self._hand_off_upto = 0  # that horizon, fixed once the queue was empty

    def hand_off(self) -> None:
        """Give up this node's unused instances of the window (rules 5-6).

        What is queued is still proposed first, in the next own instances
        (:meth:`cut` runs before the horizon is fixed); every own instance
        after those, up to the end of the window as it is when the queue is
        first empty, is skipped. Peers then never wait ``--fill`` for this
        node's turns in the window. It is the owner's SKIP of rule 5 with a
        farther horizon: only instances at or after the cursor, which this
        node has never proposed in (rule 6), and in durable mode the horizon
        is on disk before the SKIP leaves (D4).

        The horizon is fixed once, not moved with the window: a member that
        skipped each new window at once would make the others skip theirs
        (rule 5) and the cluster decide no-ops without end (a one-member
        cluster did, in one reactor turn). Later turns are skipped by rule 5
        while the node runs, and owned by nobody once its removal counts.
        """
        self.handing_off = True

    def _horizon(self) -> int:
        """Own instances below it are to be skipped (within the window)."""
        seq = self._seq
        if self.handing_off and not self._hand_off_upto and not seq._queue:
            self._hand_off_upto = seq._known_upto + 1
        return min(max(seq._skip_upto, self._hand_off_upto), seq._known_upto + 1)

    def skip_pending(self) -> bool:
        """Whether own instances below the skip horizon wait to be skipped."""
        return self._horizon() > self._seq._cursor

    def skip(self, now: float) -> None:
        """Skip this node's unused instances below the horizon (rules 5-6)."""
        seq = self._seq
        start = seq._cursor
        upto = self._horizon()
        me = seq.node_id
        owned = False
        for t in range(start, upto):
            m = seq._members[t]
            if m[t % len(m)] != me:
                continue
            owned = True
            if t in seq._decided:
                continue
            inst = seq._inst(t)
            if inst is not None:
                inst.skip()
        seq._cursor = upto
        if owned:
            if seq.durable is not None:
                seq.durable.record(SkipRec(upto))  # D4: before the SKIP leaves
            # Our range is decided when our SKIP to ourselves is handled
            # (Acceptor.on_skip), as everyone else decides it: in durable
            # mode only once the horizon is durable (deciding it at once let
            # this node apply later instances past it, then forget the SKIP
            # in a crash and propose there: 5-node simulation, seed 9).
            msg = Skip(me, start, upto)
            seq._send(me, msg)
            dests = seq._window_peers()
            dests.update(seq._observers)
            dests.discard(me)
            seq._bcast(sorted(dests), msg)

    def next_own(self) -> Optional[int]:
        """This node's next instance it may propose in, if one is in the window."""
        seq = self._seq
        me = seq.node_id
        s = seq._cursor
        while s <= seq._known_upto:
            m = seq._members[s]
            if m[s % len(m)] == me and s not in seq._decided:
                # Created here if need be (cut uses it next); in durable
                # mode restored: a revoker may have prepared it before our
                # restart.
                inst = seq._inst(s)
                # Rule 6: an instance a revoker prepared is passed over.
                if inst is None or (inst.promised == (0, me) and inst.accepted_ballot is None):
                    return s
            s += 1
        return None

    def cut(self, now: float) -> None:
        """Cut queued items into own instances and send their ACCEPTs (rule 4)."""
        seq = self._seq
        me = seq.node_id
        while seq._queue:
            if seq._inflight >= seq.max_inflight:
                seq._blocked = "inflight"
                return
            s = self.next_own()
            if s is None:
                if me not in seq._members.get(seq._known_upto, ()):
                    seq.catchup.forward_queue(now)
                else:
                    seq._blocked = "window"
                return
            items = self.take_batch()
            value = encode_batch(items)
            inst = seq._inst(s)
            assert inst is not None
            inst.phase = PROPOSING
            inst.ballot = (0, me)
            inst.items = items
            inst.own_value = value
            inst.value = value
            inst.value_digest = inst.note_value(value)
            inst.sent_at = now
            seq._coord[s] = inst
            seq._inflight += 1
            seq._cursor = s + 1
            seq._proposed_at = now
            seq._count("proposed")
            msg = Accept(s, inst.ballot, value)
            if seq.durable is not None and len(inst.members) > 1:
                # The reservation R stays ahead of our proposals: with it on
                # disk, the ACCEPT below leaves at once (CONSENSUS §D). Alone
                # in M(s) there is nobody to send it to, and an R would only
                # cost a restart the revocation of our turns up to it.
                seq.durable.reserve(s, seq._known_upto + seq.alpha)
            # To ourselves first: in durable mode our own acceptor accepts
            # it at once, which records it, so the ACCEPT to the others,
            # produced after that record, waits for its fsync (D3,
            # Durability.send), unless R covers s; our own vote always does.
            seq._send(me, msg)
            for dest in inst.members:
                if dest != me:
                    seq._send(dest, msg)
        seq._blocked = ""

    def take_batch(self) -> list[bytes]:
        """The queue's first items that fit in one instance's value."""
        seq = self._seq
        budget = seq.max_value - ENVELOPE_OVERHEAD
        size = 0
        n = 0
        queue = seq._queue
        for item in queue:
            size += len(item) + ITEM_OVERHEAD
            if size > budget and n:
                break
            n += 1
        items = queue[:n]
        del queue[:n]
        return items
