"""The acceptor's rules 1-3 (with the owner's reactions, rules 5-6), the
revoker's full Paxos (rule 7) and the coordinator's retransmissions.

A mixin of :class:`~doozer.consensus.sequencer.Sequencer`, split out to keep
modules small; it uses the sequencer's window, instances and send helpers.
"""

from __future__ import annotations

from typing import Any

from doozer.consensus.instance import ACCEPTING, BACKOFF, NOOP, PREPARING, PROPOSING, Instance
from doozer.consensus.messages import (
    Accept,
    Accepted,
    Learn,
    Nack,
    Prepare,
    Promise,
    Skip,
    TooOld,
    Want,
)

# Largest number of promise entries / bytes of accepted values in one PROMISE.
_PROMISE_ENTRIES = 64


class Phases:
    """The acceptor (rules 1-3, 5-6) and the revoker (rule 7).

    A mixin: the state it uses (window, instances, send helpers) belongs to
    :class:`~doozer.consensus.sequencer.Sequencer`.
    """

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - typing aid only
        raise AttributeError(name)

    _coord: dict[int, Instance]

    def _phase_handlers(self) -> dict[type, Any]:
        self._coord = {}
        return {
            Accept: self._on_accept,
            Prepare: self._on_prepare,
            Promise: self._on_promise,
            Nack: self._on_nack,
        }

    # ------------------------------------------------------------------
    # acceptor

    def _on_accept(self, sender: str, msg: Accept, now: float) -> None:
        """Rule 2, plus rule 5 (skip below someone else's proposal)."""
        s = msg.seqn
        if s < self._next_out or s in self._decided:
            self._answer_decided(sender, s)
            return
        inst = self._inst(s)
        if inst is None:
            if s > self._known_upto:
                self._beyond(sender, s)
                self._hold_early(s, sender, msg)
            return
        ballot = msg.ballot
        if ballot[1] != sender or not inst.valid_ballot(ballot) or sender not in inst.members:
            # Only the owner (at ballot 0) or another member of M(s) (a
            # revoker) may propose for s.
            self._count("bad_ballot")
            return
        value_digest = inst.note_value(msg.value)
        if s > self._frontier:
            self._frontier = s
        if ballot[0] == 0:
            self._proposed_at = now  # an owner proposed: the cluster is busy
        me = self.node_id
        if me in inst.members:
            verdict = inst.accept(ballot, msg.value)
            if verdict:
                self._bcast(inst.members, Accepted(s, ballot, value_digest))
            elif verdict is False:
                self._send(sender, Nack(s, inst.promised))
        if inst.owner != me:
            if s > self._skip_upto:
                self._skip_upto = s
        elif sender != me and s >= self._cursor and s + 1 > self._skip_upto:
            self._skip_upto = s + 1  # rule 6: a revoker took our unused instance
        if inst.chosen_digest == value_digest:
            self._decide(s, msg.value)

    def _answer_decided(self, sender: str, s: int) -> None:
        """A message about a decided instance: answer with the decision, or
        TOO_OLD when it was discarded (never act as an acceptor there)."""
        if sender == self.node_id:
            return
        value = self._value_of(s)
        if value is not None:
            self._send(sender, Learn(s, value))
        else:
            self._send(sender, TooOld(s, self._log_oldest))

    def _on_skip(self, sender: str, msg: Skip, now: float) -> None:
        """Rule 3 and the learner's shortcut: the owner's range is no-ops."""
        owner = msg.owner
        if sender != owner:
            self._count("bad_skip")
            return
        me = self.node_id
        members = self._members
        if msg.upto > self._known_upto + 1:
            # Partly beyond our window (we are a little behind the owner):
            # keep it for when the window gets there. Nothing resends a
            # SKIP, and an owner that skipped to a new membership (the
            # voting gap) and then died could only be revoked by a quorum
            # of the old members, which may no longer exist.
            self._hold_early(self._known_upto + 1, sender, msg)
        for t in range(max(msg.start, self._next_out), min(msg.upto, self._known_upto + 1)):
            m = members[t]
            if m[t % len(m)] != owner or t in self._decided:
                continue
            inst = self._inst(t)
            if inst is not None and me in inst.members:
                inst.skip()
            self._decide(t, NOOP)

    def _on_prepare(self, sender: str, msg: Prepare, now: float) -> None:
        """Rule 1, for a list of instances; rule 6 for our own unused ones."""
        ballot = msg.ballot
        if ballot[0] < 1 or ballot[1] != sender:
            self._count("bad_ballot")
            return
        me = self.node_id
        entries: list = []
        nack = None
        beyond: list = []
        for s in msg.seqns:
            if s < self._next_out or s in self._decided:
                self._answer_decided(sender, s)
                continue
            inst = self._inst(s)
            if inst is None or me not in inst.members or sender not in inst.members:
                if s > self._known_upto:
                    self._beyond(sender, s)
                    beyond.append(s)
                continue  # never promised implicitly (nor to a non-member): left out
            if inst.prepare(ballot):
                entries.append((s, inst.accepted_ballot, inst.accepted_value))
                if inst.owner == me and s >= self._cursor and s + 1 > self._skip_upto:
                    self._skip_upto = s + 1
            elif nack is None or inst.promised > nack[1]:
                nack = (s, inst.promised)
        if beyond:
            # Just beyond our window (a revoker a little ahead of us, e.g.
            # revoking a silent owner's turns as they come into its window):
            # promise them once we get there, as a delayed datagram would.
            self._hold_early(min(beyond), sender, Prepare(tuple(beyond), ballot))
        if nack is not None:
            self._send(sender, Nack(*nack))
        budget = self.max_value // 2
        chunk: list = []
        size = 0
        for entry in entries:
            n = len(entry[2]) if entry[2] is not None else 0
            if chunk and (size + n > budget or len(chunk) >= _PROMISE_ENTRIES):
                self._send(sender, Promise(ballot, tuple(chunk)))
                chunk, size = [], 0
            chunk.append(entry)
            size += n
        if chunk:
            self._send(sender, Promise(ballot, tuple(chunk)))

    # ------------------------------------------------------------------
    # revoker

    def _on_promise(self, sender: str, msg: Promise, now: float) -> None:
        for s, accepted_ballot, accepted_value in msg.entries:
            inst = self._instances.get(s)
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
                inst.phase = ACCEPTING
                inst.value = value
                inst.value_digest = inst.note_value(value)
                inst.sent_at = now
                self._bcast(inst.members, Accept(s, inst.ballot, value))

    def _on_nack(self, sender: str, msg: Nack, now: float) -> None:
        inst = self._instances.get(msg.seqn)
        if inst is None or inst.decided or sender not in inst.members:
            return
        if msg.promised[0] > inst.max_k:
            inst.max_k = msg.promised[0]
        if inst.phase in (PROPOSING, PREPARING, ACCEPTING) and inst.ballot < msg.promised:
            self._count("nacked")
            # An owner NACKed is being revoked: give the revoker time to finish.
            first = self.fill if inst.phase == PROPOSING else 0.001
            inst.backoff = min(max(first, inst.backoff * 2), 4 * self.fill)
            inst.retry_at = now + inst.backoff * (1 + self.rng.random())
            inst.phase = BACKOFF

    def _revoke_silent_ahead(self, now: float, only_new: bool = False) -> None:
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
        owners = self._silent_owners
        if not owners or now - self._proposed_at > 2 * self.fill:
            return
        heard = self.last_heard
        for owner in [o for o, since in owners.items() if heard.get(o, float("-inf")) > since]:
            del owners[owner]  # it spoke again
        if not owners:
            return
        me = self.node_id
        revoke = []
        start = max(self._next_out, self._ahead_from) if only_new else self._next_out
        self._ahead_from = self._known_upto + 1
        for s in range(start, self._known_upto + 1):
            m = self._members.get(s)
            if m is None or s in self._decided:
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
                    or now - heard.get(m[(s + i) % n], float("-inf")) < 3 * self.fill
                ),
                None,
            )
            if first_heard != me:
                continue
            inst = self._inst(s)
            if inst is not None and inst.phase is None:
                revoke.append(inst)
        if revoke:
            self._count("revoked_ahead", len(revoke))
            self._start_prepare(revoke, now)

    def _start_prepare(self, insts: list[Instance], now: float) -> None:
        k = 1 + max(inst.max_k for inst in insts)
        ballot = (k, self.node_id)
        dests: set = set()
        seqns = []
        for inst in insts:
            inst.phase = PREPARING
            inst.ballot = ballot
            inst.max_k = k
            inst.promises = {}
            inst.sent_at = now
            self._coord[inst.seqn] = inst
            dests.update(inst.members)
            seqns.append(inst.seqn)
        self._count("prepared", len(seqns))
        self._bcast(sorted(dests), Prepare(tuple(seqns), ballot))

    def _retransmit(self, now: float) -> None:
        """Resend identical ACCEPT/PREPARE to those that have not answered."""
        retry = []
        prepares: dict[tuple, list] = {}
        for inst in list(self._coord.values()):
            if inst.phase == BACKOFF:
                if now >= inst.retry_at:
                    retry.append(inst)
                continue
            if now - inst.sent_at < self.fill:
                continue
            inst.sent_at = now
            self._count("retransmit")
            if inst.phase == PREPARING:
                prepares.setdefault(inst.ballot, []).append(inst)
                continue
            voted = inst.voters(inst.ballot, inst.value_digest)
            msg = Accept(inst.seqn, inst.ballot, inst.value)
            for m in inst.members:
                if m not in voted and m != self.node_id:
                    self._send(m, msg)
        for ballot, insts in prepares.items():
            dests = {m for inst in insts for m in inst.members if m not in inst.promises}
            dests.discard(self.node_id)
            self._bcast(sorted(dests), Prepare(tuple(i.seqn for i in insts), ballot))
        if retry:
            self._start_prepare(retry, now)

    def _scan_open(self, now: float) -> None:
        """Rule 7's trigger: instances others wait on, open for ``fill``.

        First ask for them (WANT: maybe only the news was lost), then, after
        a randomized extra delay, revoke them. An owner found silent when
        its instances were revoked keeps being revoked ahead: see
        :meth:`_revoke_silent_ahead`.
        """
        self._revoke_silent_ahead(now)
        hi = min(self._frontier, self._known_upto + 1)
        if self._queue and self._blocked == "window":
            # Our own items wait for the window to move: everything open in
            # it is waited on, even with no later proposal to point at it.
            hi = self._known_upto + 1
        want = []
        revoke = []
        me = self.node_id
        for s in range(self._next_out, hi):
            if s in self._decided:
                continue
            inst = self._inst(s)
            if inst is None or inst.phase is not None:
                continue
            if inst.open_since is None:
                inst.open_since = now
            elif inst.wanted_at is None:
                if now - inst.open_since >= self.fill:
                    inst.wanted_at = now
                    inst.revoke_after = now + self.fill * (1 + self.rng.random())
                    want.append(s)
            elif now >= inst.revoke_after and me in inst.members:
                revoke.append(inst)
        if want:
            peers = [m for m in self._window_peers() if m != me]
            if peers:
                peers.sort()
                self._send(self.rng.choice(peers), Want(want[0], want[-1] + 1))
        if not revoke:
            return
        # An owner silent for fill: take its whole share of the window at once.
        heard = self.last_heard
        silent = {
            inst.owner
            for inst in revoke
            if inst.owner != me and now - heard.get(inst.owner, self._created) >= self.fill
        }
        if silent:
            for owner in silent:
                self._silent_owners[owner] = now
            chosen = {inst.seqn for inst in revoke}
            for s in range(self._next_out, self._known_upto + 1):
                if s in chosen or s in self._decided or self._owner(s) not in silent:
                    continue
                inst = self._inst(s)
                if inst is not None and inst.phase is None and me in inst.members:
                    revoke.append(inst)
        self._start_prepare(revoke, now)


