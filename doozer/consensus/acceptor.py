"""The acceptor: Paxos rules 1-3 for the instances of the window, with the
owner's reactions to others' proposals (rules 5-6). Rule numbers refer to
CONSENSUS.md.

A collaborator of :class:`~doozer.consensus.sequencer.Sequencer`: it works
on the sequencer's window, instances and send helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from doozer.consensus.durable import AcceptRec, PromiseRec
from doozer.consensus.messages import (
    Accept,
    Accepted,
    Learn,
    Nack,
    Prepare,
    Promise,
    PromiseEntry,
    Skip,
    TooOld,
)
from doozer.consensus.value import NOOP

if TYPE_CHECKING:  # the sequencer holds this collaborator; typing only
    from doozer.consensus.sequencer import Sequencer

# Largest number of promise entries / bytes of accepted values in one PROMISE.
_PROMISE_ENTRIES = 64


class Acceptor:
    """The acceptor's handlers (ACCEPT, SKIP, PREPARE) of one sequencer.

    :param seq: the sequencer whose instances it votes in.
    """

    def __init__(self, seq: "Sequencer") -> None:
        self.seq = seq

    def on_accept(self, sender: str, msg: Accept, now: float) -> None:
        """Rule 2, plus rule 5 (skip below someone else's proposal)."""
        seq = self.seq
        s = msg.seqn
        if s < seq._next_out or s in seq._decided:
            self.answer_decided(sender, s)
            return
        inst = seq._inst(s)
        if inst is None:
            if s > seq._known_upto:
                seq.catchup.beyond(sender, s)
                seq.early.hold(s, sender, msg)
            return
        ballot = msg.ballot
        if ballot[1] != sender or not inst.valid_ballot(ballot) or sender not in inst.members:
            # Only the owner (at ballot 0) or another member of M(s) (a
            # revoker) may propose for s.
            seq._count("bad_ballot")
            return
        value_digest = inst.note_value(msg.value)
        if s > seq._frontier:
            seq._frontier = s
        if ballot[0] == 0:
            seq._proposed_at = now  # an owner proposed: the cluster is busy
        me = seq.node_id
        if me in inst.members:
            was = inst.accepted_ballot
            verdict = inst.accept(ballot, msg.value)
            if verdict and was != ballot and seq.durable is not None:
                self._record_accept(s, ballot, msg.value)
            if verdict:
                seq._bcast(inst.members, Accepted(s, ballot, value_digest))
            elif verdict is False:
                seq._send(sender, Nack(s, inst.promised))
        if inst.owner != me:
            if s > seq._skip_upto:
                seq._skip_upto = s
        elif sender != me and s >= seq._cursor and s + 1 > seq._skip_upto:
            seq._skip_upto = s + 1  # rule 6: a revoker took our unused instance
        if inst.chosen_digest == value_digest:
            seq.decided_log.decide(s, msg.value)

    def _record_accept(self, s: int, ballot: tuple[Any, ...], value: bytes) -> None:
        """D2 (D3 for our own ballot 0): the accept is durable before the
        ACCEPTED (and our own ACCEPT) produced after it leaves."""
        durable = self.seq.durable
        assert durable is not None
        durable.record(AcceptRec(s, ballot, value))

    def answer_decided(self, sender: str, s: int) -> None:
        """A message about a decided instance: answer with the decision, or
        TOO_OLD when it was discarded (never act as an acceptor there)."""
        seq = self.seq
        if sender == seq.node_id:
            return
        value = seq.decided_log.value_of(s)
        if value is not None:
            seq._send(sender, Learn(s, value))
        else:
            seq._send(sender, TooOld(s, seq.decided_log.oldest))

    def on_skip(self, sender: str, msg: Skip, now: float) -> None:
        """Rule 3 and the learner's shortcut: the owner's range is no-ops."""
        seq = self.seq
        owner = msg.owner
        if sender != owner:
            seq._count("bad_skip")
            return
        me = seq.node_id
        members = seq._members
        if msg.upto > seq._known_upto + 1:
            # Partly beyond our window (we are a little behind the owner):
            # keep it for when the window gets there. Nothing resends a
            # SKIP, and an owner that skipped to a new membership (the
            # voting gap) and then died could only be revoked by a quorum
            # of the old members, which may no longer exist.
            seq.early.hold(seq._known_upto + 1, sender, msg)
        for t in range(max(msg.start, seq._next_out), min(msg.upto, seq._known_upto + 1)):
            m = members[t]
            if m[t % len(m)] != owner or t in seq._decided:
                continue
            inst = seq._inst(t)
            if inst is not None and me in inst.members:
                inst.skip()
            seq.decided_log.decide(t, NOOP, skip=True)

    def on_prepare(self, sender: str, msg: Prepare, now: float) -> None:
        """Rule 1, for a list of instances; rule 6 for our own unused ones."""
        seq = self.seq
        ballot = msg.ballot
        if ballot[0] < 1 or ballot[1] != sender:
            seq._count("bad_ballot")
            return
        me = seq.node_id
        entries: list[PromiseEntry] = []
        nack = None
        beyond: list[int] = []
        for s in msg.seqns:
            if s < seq._next_out or s in seq._decided:
                self.answer_decided(sender, s)
                continue
            inst = seq._inst(s)
            if inst is None or me not in inst.members or sender not in inst.members:
                if s > seq._known_upto:
                    seq.catchup.beyond(sender, s)
                    beyond.append(s)
                continue  # never promised implicitly (nor to a non-member): left out
            was = inst.promised
            if inst.prepare(ballot):
                if inst.promised != was and seq.durable is not None:
                    seq.durable.record(PromiseRec(s, ballot))  # D1: before the PROMISE
                entries.append((s, inst.accepted_ballot, inst.accepted_value))
                if inst.owner == me and s >= seq._cursor and s + 1 > seq._skip_upto:
                    seq._skip_upto = s + 1
            elif nack is None or inst.promised > nack[1]:
                nack = (s, inst.promised)
        if beyond:
            # Just beyond our window (a revoker a little ahead of us, e.g.
            # revoking a silent owner's turns as they come into its window):
            # promise them once we get there, as a delayed datagram would.
            seq.early.hold(min(beyond), sender, Prepare(tuple(beyond), ballot))
        if nack is not None:
            seq._send(sender, Nack(*nack))
        budget = seq.max_value // 2
        chunk: list[PromiseEntry] = []
        size = 0
        for entry in entries:
            n = len(entry[2]) if entry[2] is not None else 0
            if chunk and (size + n > budget or len(chunk) >= _PROMISE_ENTRIES):
                seq._send(sender, Promise(ballot, tuple(chunk)))
                chunk, size = [], 0
            chunk.append(entry)
            size += n
        if chunk:
            seq._send(sender, Promise(ballot, tuple(chunk)))
