"""The revoker: full Paxos (rule 7) for instances others wait on, revoking
silent owners' turns ahead, and the coordinator's retransmissions and
back-off. Rule numbers refer to CONSENSUS.md.

A collaborator of :class:`~doozer.consensus.sequencer.Sequencer`.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from doozer.consensus.instance import (
    ACCEPTING,
    BACKOFF,
    PARKED,
    PREPARING,
    PROPOSING,
    Instance,
)
from doozer.consensus.messages import Accept, Ballot, Nack, Prepare, Promise, Want
from doozer.consensus.value import NOOP

if TYPE_CHECKING:  # the sequencer holds this collaborator; typing only
    from doozer.consensus.sequencer import Sequencer


class Revoker:
    """Revocations and retransmissions of one sequencer.

    :param seq: the sequencer whose open instances it drives.
    """

    def __init__(self, seq: "Sequencer") -> None:
        self.seq = seq
        #: seqns of instances revoked ahead whose phase 1 found nothing
        #: accepted, held before phase 2 until someone waits on them (a heap;
        #: entries whose instance moved on are dropped when met)
        self.parked: list[int] = []

    def on_promise(self, sender: str, msg: Promise, now: float) -> None:
        seq = self.seq
        for s, accepted_ballot, accepted_value in msg.entries:
            inst = seq._instances.get(s)
            if (
                inst is None
                or inst.phase != PREPARING
                or inst.ballot != msg.ballot
                or sender not in inst.members
            ):
                continue
            if inst.promise_from(sender, accepted_ballot, accepted_value):
                # Rule 7: adopt the highest accepted value, else a no-op.
                value = inst.adopted_value()
                inst.value = value
                inst.value_digest = inst.note_value(value)
                if value == NOOP and not self._waited_on(inst):
                    inst.phase = PARKED
                    heapq.heappush(self.parked, s)
                    continue
                self._send_accept(inst, now)

    def _send_accept(self, inst: Instance, now: float) -> None:
        """Phase 2 of rule 7 with the value adopted in phase 1."""
        assert inst.ballot is not None and inst.value is not None
        inst.phase = ACCEPTING
        inst.sent_at = now
        self.seq._bcast(inst.members, Accept(inst.seqn, inst.ballot, inst.value))

    def _waited_on(self, inst: Instance) -> bool:
        """Whether deciding ``inst`` now lets the log move for someone.

        Revoking a silent owner's turns ahead (:meth:`revoke_silent_ahead`)
        runs phase 1 as they enter the window, so that a write behind them
        costs one round trip; but deciding them at once made the log run
        away: every no-op decided lets the live owners skip their turns
        below it (rule 5), the window slides by nearly its width, new turns
        of the silent owner enter it and are revoked in turn, as long as
        any write came within ``2 * fill``. With a member dead or cut off
        (``--timeout`` 60) the simulated cluster decided about 5,000
        instances a second at a write every 0.2 s, 1,600 at one a second,
        for nothing; a returning member then had to copy a snapshot. So a no-op
        adopted ahead is parked after phase 1 until the log has something
        above it: an instance proposed or decided beyond it (a write, a
        skip closing a voting gap), our own requests waiting for the window
        to move, or its owner speaking again (it should find its turns
        decided rather than compete for them).
        """
        seq = self.seq
        return (
            inst.seqn < seq._frontier
            or bool(seq._queue and seq._blocked == "window")
            or inst.owner not in seq._silent_owners
        )

    def release(self, now: float) -> bool:
        """Phase 2 for the parked instances someone now waits on.

        :returns: whether any ACCEPT went out.
        """
        parked = self.parked
        instances = self.seq._instances
        sent = False
        while parked:
            inst = instances.get(parked[0])
            if inst is None or inst.phase != PARKED:
                heapq.heappop(parked)  # decided, installed past, or retried
                continue
            if not self._waited_on(inst):
                break  # nor, in a 3-member cluster, anything after it
            heapq.heappop(parked)
            self._send_accept(inst, now)
            sent = True
        return sent

    def on_nack(self, sender: str, msg: Nack, now: float) -> None:
        seq = self.seq
        inst = seq._instances.get(msg.seqn)
        if inst is None or inst.decided or sender not in inst.members:
            return
        if msg.promised[0] > inst.max_k:
            inst.max_k = msg.promised[0]
        if (
            inst.phase in (PROPOSING, PREPARING, ACCEPTING)
            and inst.ballot is not None  # always, in these phases
            and inst.ballot < msg.promised
        ):
            seq._count("nacked")
            # An owner NACKed is being revoked: give the revoker time to finish.
            first = seq.fill if inst.phase == PROPOSING else 0.001
            inst.backoff = min(max(first, inst.backoff * 2), 4 * seq.fill)
            inst.retry_at = now + inst.backoff * (1 + seq.rng.random())
            inst.phase = BACKOFF

    def revoke_silent_ahead(self, now: float, only_new: bool = False) -> None:
        """Revoke a silent owner's instances as soon as they enter the window.

        Once this node had to revoke the instances of an owner that said
        nothing for ``fill`` (dead, stopped or cut off), that owner blocks
        the log at every one of its turns until it is removed from the CAL
        (``--timeout``, a minute by default). Waiting each time for the log
        to reach the next of its turns, asking (WANT), and a random delay
        cost about 0.3 s per window of α instances: a cluster with a dead
        member took ~80 writes/s instead of thousands. So while it stays
        silent, its instances are prepared as they come into the window.
        Only while the cluster is busy (an owner proposed within the last
        ``2 * fill``): an idle cluster would otherwise turn its log over
        forever, a window of no-ops at a time. One member does it, to keep
        revokers from duelling: the first in
        ``M(s)`` after the owner that this node has heard from lately
        (another member takes over the normal way if that one is gone too).
        Safe whatever the owner's state: phase 1 adopts anything it may have
        had accepted, and a live owner skips past what was taken (rule 6).
        """
        seq = self.seq
        owners = seq._silent_owners
        if not owners:
            return
        heard = seq.last_heard
        for owner in [o for o, since in owners.items() if heard.get(o, float("-inf")) > since]:
            del owners[owner]  # it spoke again (its parked turns go now)
        if not owners or now - seq._proposed_at > 2 * seq.fill:
            return
        me = seq.node_id
        revoke = []
        start = max(seq._next_out, seq._ahead_from) if only_new else seq._next_out
        seq._ahead_from = seq._known_upto + 1
        for s in range(start, seq._known_upto + 1):
            m = seq._members.get(s)
            if m is None or s in seq._decided:
                continue
            owner = m[s % len(m)]
            if owner not in owners or me not in m:
                continue
            n = len(m)
            first_heard = next(
                (
                    m[(s + i) % n]
                    for i in range(1, n)
                    if m[(s + i) % n] == me
                    or now - heard.get(m[(s + i) % n], float("-inf")) < 3 * seq.fill
                ),
                None,
            )
            if first_heard != me:
                continue
            inst = seq._inst(s)
            if inst is not None and inst.phase is None:
                revoke.append(inst)
        if revoke:
            seq._count("revoked_ahead", len(revoke))
            self.start_prepare(revoke, now)

    def start_prepare(self, insts: list[Instance], now: float) -> None:
        seq = self.seq
        k = 1 + max(inst.max_k for inst in insts)
        if seq.durable is not None:
            # D5: this incarnation's own range of k, so a restarted node
            # never reuses a ballot it sent before (what it has seen since
            # the restart says nothing of what it sent before).
            k = max(k, seq.durable.ballot_floor() + 1)
        ballot = (k, seq.node_id)
        dests: set[str] = set()
        seqns = []
        for inst in insts:
            inst.phase = PREPARING
            inst.ballot = ballot
            inst.max_k = k
            inst.promises = {}
            inst.sent_at = now
            seq._coord[inst.seqn] = inst
            dests.update(inst.members)
            seqns.append(inst.seqn)
        seq._count("prepared", len(seqns))
        seq._bcast(sorted(dests), Prepare(tuple(seqns), ballot))

    def retransmit(self, now: float) -> None:
        """Resend identical ACCEPT/PREPARE to those that have not answered."""
        seq = self.seq
        retry = []
        prepares: dict[Ballot, list[Instance]] = {}
        for inst in list(seq._coord.values()):
            if inst.phase == BACKOFF:
                if now >= inst.retry_at:
                    retry.append(inst)
                continue
            if now - inst.sent_at < seq.fill or inst.phase == PARKED:
                continue  # (a parked instance has nothing to resend)
            inst.sent_at = now
            seq._count("retransmit")
            ballot = inst.ballot
            assert ballot is not None  # set with every coordinating phase
            if inst.phase == PREPARING:
                prepares.setdefault(ballot, []).append(inst)
                continue
            # Proposing or accepting: the value went out with the ballot.
            assert inst.value is not None and inst.value_digest is not None
            voted = inst.voters(ballot, inst.value_digest)
            msg = Accept(inst.seqn, ballot, inst.value)
            for m in inst.members:
                if m not in voted and m != seq.node_id:
                    seq._send(m, msg)
        for ballot, insts in prepares.items():
            dests = {m for inst in insts for m in inst.members if m not in inst.promises}
            dests.discard(seq.node_id)
            seq._bcast(sorted(dests), Prepare(tuple(i.seqn for i in insts), ballot))
        if retry:
            self.start_prepare(retry, now)

    def scan_open(self, now: float) -> None:
        """Rule 7's trigger: instances others wait on, open for ``fill``.

        First ask for them (WANT: maybe only the news was lost), then, after
        a randomized extra delay, revoke them. An owner found silent when
        its instances were revoked keeps being revoked ahead: see
        :meth:`revoke_silent_ahead`.
        """
        seq = self.seq
        self.revoke_silent_ahead(now)
        hi = min(seq._frontier, seq._known_upto + 1)
        if seq._queue and seq._blocked == "window":
            # Our own items wait for the window to move: everything open in
            # it is waited on, even with no later proposal to point at it.
            hi = seq._known_upto + 1
        want = []
        revoke = []
        me = seq.node_id
        for s in range(seq._next_out, hi):
            if s in seq._decided:
                continue
            inst = seq._inst(s)
            if inst is None or inst.phase is not None:
                continue
            if inst.open_since is None:
                inst.open_since = now
            elif inst.wanted_at is None:
                if now - inst.open_since >= seq.fill:
                    inst.wanted_at = now
                    inst.revoke_after = now + seq.fill * (1 + seq.rng.random())
                    want.append(s)
            elif now >= inst.revoke_after and me in inst.members:
                revoke.append(inst)
        if want:
            peers = [m for m in seq._window_peers() if m != me]
            if peers:
                peers.sort()
                seq._send(seq.rng.choice(peers), Want(want[0], want[-1] + 1))
        if not revoke:
            return
        # An owner silent for fill: take its whole share of the window at once.
        heard = seq.last_heard
        silent = {
            inst.owner
            for inst in revoke
            if inst.owner != me and now - heard.get(inst.owner, seq._created) >= seq.fill
        }
        if silent:
            for owner in silent:
                seq._silent_owners[owner] = now
            chosen = {inst.seqn for inst in revoke}
            for s in range(seq._next_out, seq._known_upto + 1):
                if s in chosen or s in seq._decided or seq._owner(s) not in silent:
                    continue
                inst = seq._inst(s)
                if inst is not None and inst.phase is None and me in inst.members:
                    revoke.append(inst)
        self.start_prepare(revoke, now)
