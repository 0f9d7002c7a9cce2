"""Catch-up, heartbeats and forwarding for non-members.

PING heartbeats (which carry the sender's decided seqn), WANT/LEARN
catch-up, TOO_OLD (the asker needs a snapshot) and the install of one, and
FORWARD, by which a non-member gets its items proposed by a member.
Duplicated forwards are harmless: the store de-duplicates by ``(origin,
request)`` until their deadline.

A collaborator of :class:`~doozer.consensus.sequencer.Sequencer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from doozer.consensus.messages import (
    ENVELOPE_OVERHEAD,
    ITEM_OVERHEAD,
    Forward,
    Learn,
    Ping,
    TooOld,
    Want,
)

if TYPE_CHECKING:  # the sequencer holds this collaborator; typing only
    from doozer.consensus.sequencer import Sequencer

#: Queue length beyond which a member stops taking forwarded items.
MAX_FORWARDED_QUEUE = 100_000

#: Most instances answered to one WANT.
WANT_BATCH = 64

#: WANTs a node behind sends at once (each for WANT_BATCH instances). The
#: next round goes as soon as the last one is answered, not after ``fill``:
#: one WANT per ``fill`` (640 instances a second) could not outrun a busy
#: cluster (soak seed 15311: 600-2,000 a second), so a node that installed a
#: snapshot never caught up while the writes went on.
WANT_PIPELINE = 4


class CatchUp:
    """Heartbeats, catch-up, snapshot installs and forwarding of one sequencer.

    :param seq: the sequencer it keeps up to date.
    """

    def __init__(self, seq: "Sequencer") -> None:
        self.seq = seq
        #: asked for by the last WANTs, not yet learned
        self._wanted: set[int] = set()
        #: the seqn no peer ahead kept when ``snapshot_needed`` was last set
        self._unserved = 0

    def _pick_member(self) -> Optional[str]:
        seq = self.seq
        members = [m for m in seq._members.get(seq._known_upto, ()) if m != seq.node_id]
        if not members:
            return None
        heard = seq.last_heard
        return max(members, key=lambda m: heard.get(m, float("-inf")))

    def forward_queue(self, now: float) -> None:
        seq = self.seq
        target = self._pick_member()
        if target is None:
            seq._blocked = "nobody"
            return
        items, seq._queue = seq._queue, []
        for item in items:
            seq._forwarded[item] = [now, now]
        self._send_forward(target, items)

    def _send_forward(self, target: str, items: list[bytes]) -> None:
        seq = self.seq
        budget = seq.max_value - ENVELOPE_OVERHEAD
        chunk: list[bytes] = []
        size = 0
        for item in items:
            if chunk and size + len(item) + ITEM_OVERHEAD > budget:
                seq._send(target, Forward(tuple(chunk)))
                chunk, size = [], 0
            chunk.append(item)
            size += len(item) + ITEM_OVERHEAD
        if chunk:
            seq._send(target, Forward(tuple(chunk)))
        seq._count("forwarded", len(items))

    def resend_forwards(self, now: float) -> None:
        seq = self.seq
        if not seq._forwarded:
            return
        ttl = max(60 * seq.fill, 30.0)
        again = []
        for item, times in list(seq._forwarded.items()):
            if now - times[0] > ttl:
                del seq._forwarded[item]  # the writer has long timed out
            elif now - times[1] >= 5 * seq.fill:
                times[1] = now
                again.append(item)
        if again:
            members = [m for m in seq._members.get(seq._known_upto, ()) if m != seq.node_id]
            if members:
                self._send_forward(seq.rng.choice(members), again)

    def on_forward(self, sender: str, msg: Forward, now: float) -> None:
        seq = self.seq
        if seq.node_id in seq._members.get(seq._known_upto, ()):
            if len(seq._queue) >= MAX_FORWARDED_QUEUE:
                seq._count("forward_dropped", len(msg.items))  # the sender retries
                return
            seq._queue.extend(msg.items)
            seq._blocked = ""
        else:
            seq._count("forward_refused")

    def ping(self, now: float) -> None:
        seq = self.seq
        for peer, since in list(seq._observers.items()):
            if now - since > 3 * seq.ping_interval:
                del seq._observers[peer]
        peers = seq._window_peers()
        peers.update(seq._observers)
        peers.discard(seq.node_id)
        msg = self.own_ping()
        last_ping = seq._last_ping
        for peer in sorted(peers):
            # Sent even to peers we talk to anyway: only PING carries our
            # decided seqn, which laggards need to ask for what they miss.
            if now - last_ping.get(peer, float("-inf")) >= seq.ping_interval:
                last_ping[peer] = now
                seq._send(peer, msg)

    def own_ping(self) -> Ping:
        """This node's heartbeat: decided seqn, frontier and suspects."""
        seq = self.seq
        return Ping(seq._next_out - 1, seq._frontier, seq.suspects)

    def on_ping(self, sender: str, msg: Ping, now: float) -> None:
        seq = self.seq
        seq.peer_decided[sender] = msg.decided
        seq.peer_suspects[sender] = (msg.suspects, now)
        if sender not in seq._window_peers():
            seq._observers[sender] = now
        if msg.decided < seq._next_out - 1 and now - seq._last_sent.get(sender, float("-inf")) >= seq.fill:
            seq._send(sender, self.own_ping())  # help a laggard
        elif msg.decided >= seq._next_out:
            self.catch_up(now)

    def catch_up(self, now: float) -> None:
        seq = self.seq
        if now - seq._want_at < seq.fill or not seq.peer_decided:
            return
        # Ask the most advanced peer heard from lately (a crashed one keeps
        # its last PING's figure forever) whose log may hold what we miss.
        start = self._first_missing()
        ahead, servers = self.ahead(now, start)
        if not servers:
            if ahead:
                # Behind peers none of which keeps what we miss: only a
                # snapshot brings us up.
                self._need_snapshot(start)
            return
        best, peer = max(servers)
        upto = min(best + 1, start + WANT_PIPELINE * WANT_BATCH)
        seq._want_at = now
        self._wanted = set(range(start, upto)).difference(seq._decided)
        for s in range(start, upto, WANT_BATCH):
            seq._send(peer, Want(s, min(s + WANT_BATCH, upto)))

    def _first_missing(self) -> int:
        """The first seqn from ``_next_out`` on that is not decided here."""
        seq = self.seq
        s = seq._next_out
        decided = seq._decided
        while s in decided:
            s += 1
        return s

    def heard_lately(self, peer: str, now: float) -> bool:
        """Whether ``peer`` spoke within three PING intervals (a crashed or
        stopped peer keeps its last figures forever)."""
        seq = self.seq
        return seq.last_heard.get(peer, float("-inf")) >= now - 3 * seq.ping_interval

    def ahead(
        self, now: float, nxt: Optional[int] = None
    ) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """The peers heard from lately that decided ``nxt`` (default: our
        next seqn) or beyond, as ``(decided, peer)``; and those of them whose
        log may still hold it (one that answered TOO_OLD above it cannot:
        logs only lose their old end)."""
        seq = self.seq
        if nxt is None:
            nxt = seq._next_out
        ahead = [
            (d, p)
            for p, d in seq.peer_decided.items()
            if d >= nxt and self.heard_lately(p, now)
        ]
        floors = seq._peer_oldest
        return ahead, [(d, p) for d, p in ahead if floors.get(p, 0) <= nxt]

    def beyond(self, sender: str, s: int) -> None:
        """A message for an instance beyond our window: we are behind."""
        seq = self.seq
        seq._count("beyond_window")
        # The sender knows M(s), so it has applied at least s - alpha.
        if s - seq.alpha > seq.peer_decided.get(sender, 0):
            seq.peer_decided[sender] = s - seq.alpha

    def on_want(self, sender: str, msg: Want, now: float) -> None:
        seq = self.seq
        start = max(msg.start, 1)
        if start < seq.decided_log.oldest and start < seq._next_out:
            seq._send(sender, TooOld(start, seq.decided_log.oldest))
            return
        budget = 4 * seq.max_value
        for s in range(start, min(msg.upto, start + WANT_BATCH)):
            v = seq.decided_log.value_of(s)
            if v is None:
                continue
            seq._send(sender, Learn(s, v))
            budget -= len(v)
            if budget <= 0:
                break

    def on_learn(self, sender: str, msg: Learn, now: float) -> None:
        seq = self.seq
        s = msg.seqn
        if not (s < seq._next_out or s in seq._decided or s > seq._next_out + seq.retain):
            seq.decided_log.decide(s, msg.value)
        wanted = self._wanted
        if s in wanted:
            wanted.discard(s)
            if not wanted:
                # All we asked for is here: ask for more at once (the
                # answers pace the catch-up, not the timer).
                seq._want_at = float("-inf")
                self.catch_up(now)

    def install(self, floor_seqn: int, members_by_seqn: Mapping[int, Sequence[str]]) -> list[bytes]:
        """Adopt a snapshot made by applying instances up to ``floor_seqn``.

        Decisions and acceptor state at or below the floor are discarded (the
        node never acts as an acceptor there again); above it they survive.

        A snapshot settles everything at or below its seqn (rule 8): the
        items of this node's own instances there, and the items it forwarded
        for others to propose, are never proposed again. They were decided
        or not, and the snapshot's record of applied request ids tells which;
        proposing one again could apply it a second time, after writes that
        were acknowledged since.

        :param members_by_seqn: ``M(s)`` for ``s`` in ``(floor, floor + alpha]``.
        :returns: the items given up this way, so that the node answers
            their writers (from the snapshot's record, else as indeterminate).
        """
        seq = self.seq
        floor = floor_seqn
        settled: list[bytes] = []
        for s in [s for s in seq._instances if s <= floor]:
            inst = seq._instances.pop(s)
            seq._coord.pop(s, None)
            if inst.items is not None:  # own, decided or not, not handed out
                settled.extend(inst.items)
                if not inst.decided:
                    seq._inflight -= 1
        settled.extend(seq._forwarded)
        seq._forwarded.clear()
        seq.decided_log.install(floor)  # what is above the floor is handed out again
        self._wanted.clear()
        seq._next_out = floor + 1
        seq._members = {s: m for s, m in seq._members.items() if s > floor}
        for s, m in members_by_seqn.items():
            if s > floor and m:
                seq._members[s] = tuple(m)
        seq._known_upto = floor
        while seq._known_upto + 1 in seq._members:
            seq._known_upto += 1
            # A membership change the snapshot brings is skipped to as if
            # this node had applied it (the voting gap).
            seq._skip_to_membership(seq._known_upto)
        seq._cursor = max(seq._cursor, floor + 1)
        seq._frontier = max(seq._frontier, floor)
        seq.snapshot_needed = False
        seq._blocked = ""
        seq._count("snapshot_installs")
        return settled

    def on_too_old(self, sender: str, msg: TooOld, now: float) -> None:
        seq = self.seq
        if msg.oldest <= seq._next_out:
            return
        # The sender's log starts beyond what we miss (it joined by snapshot
        # lately, or keeps little). A snapshot replaces our whole state and
        # empties our own log, so others lagging would then need one from
        # us in turn: first ask a peer whose log may still reach back.
        floors = seq._peer_oldest
        if floors.get(sender, 0) < msg.oldest:
            floors[sender] = msg.oldest
            if len(floors) > 64:  # peers come and go (a restart is a new id)
                for gone in [p for p in floors if not self.heard_lately(p, now)]:
                    del floors[gone]
        seq._count("too_old")
        if self.ahead(now)[1]:
            seq._want_at = float("-inf")  # ask one of them at the next tick
        else:
            self._need_snapshot(self._first_missing())

    def _need_snapshot(self, missing: int) -> None:
        """No peer ahead keeps ``missing``: only a snapshot brings us up."""
        self.seq.snapshot_needed = True
        self._unserved = missing

    def handed_out(self) -> None:
        """Called when the log moved on: once the instance no peer kept is
        handed out here after all (LEARNs from a peer that keeps it, heard
        from again, or decided anew), the snapshot is no longer needed.

        Left set, the fetcher kept copying snapshots that were not ahead of
        the node, and anything reading the flag took the node for one still
        left behind (the lease simulation, tests/leasesim.py: no quorum
        counted as caught up in 9 seeds of 1,000). Only the node's own
        progress clears it, not hearing of no peer ahead: at a heal a node
        of the minority hears the others' figures a moment later, and would
        look caught up before it is (leasesim seed 189). If it is still
        behind peers that do not keep what it misses next, the next
        :meth:`catch_up` sets the flag again."""
        seq = self.seq
        if seq.snapshot_needed and seq._next_out > self._unserved:
            seq.snapshot_needed = False
