"""Catch-up, heartbeats and forwarding for non-members.

A mixin of :class:`~doozer.consensus.sequencer.Sequencer`, split out to keep
modules small: PING heartbeats (which carry the sender's decided seqn),
WANT/LEARN catch-up, TOO_OLD (the asker needs a snapshot) and the install
of one, and FORWARD, by which a non-member gets its items proposed by a
member. Duplicated forwards are harmless: the store de-duplicates by
``(origin, request)``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from doozer.consensus.messages import (
    ENVELOPE_OVERHEAD,
    ITEM_OVERHEAD,
    Forward,
    Learn,
    Ping,
    TooOld,
    Want,
)

#: Queue length beyond which a member stops taking forwarded items.
MAX_FORWARDED_QUEUE = 100_000

#: Most instances answered to one WANT.
WANT_BATCH = 64


class CatchUp:
    """Heartbeats, catch-up and forwarding.

    A mixin: the state it uses (window, queue, send helpers) belongs to
    :class:`~doozer.consensus.sequencer.Sequencer`.
    """

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - typing aid only
        raise AttributeError(name)

    # ------------------------------------------------------------------
    # non-members: forwarding items to a member

    def _pick_member(self) -> Optional[str]:
        members = [m for m in self._members.get(self._known_upto, ()) if m != self.node_id]
        if not members:
            return None
        heard = self.last_heard
        return max(members, key=lambda m: heard.get(m, float("-inf")))

    def _forward_queue(self, now: float) -> None:
        target = self._pick_member()
        if target is None:
            self._blocked = "nobody"
            return
        items, self._queue = self._queue, []
        for item in items:
            self._forwarded[item] = [now, now]
        self._send_forward(target, items)

    def _send_forward(self, target: str, items: list[bytes]) -> None:
        budget = self.max_value - ENVELOPE_OVERHEAD
        chunk: list[bytes] = []
        size = 0
        for item in items:
            if chunk and size + len(item) + ITEM_OVERHEAD > budget:
                self._send(target, Forward(tuple(chunk)))
                chunk, size = [], 0
            chunk.append(item)
            size += len(item) + ITEM_OVERHEAD
        if chunk:
            self._send(target, Forward(tuple(chunk)))
        self._count("forwarded", len(items))

    def _resend_forwards(self, now: float) -> None:
        if not self._forwarded:
            return
        ttl = max(60 * self.fill, 30.0)
        again = []
        for item, times in list(self._forwarded.items()):
            if now - times[0] > ttl:
                del self._forwarded[item]  # the writer has long timed out
            elif now - times[1] >= 5 * self.fill:
                times[1] = now
                again.append(item)
        if again:
            members = [m for m in self._members.get(self._known_upto, ()) if m != self.node_id]
            if members:
                self._send_forward(self.rng.choice(members), again)

    def _on_forward(self, sender: str, msg: Forward, now: float) -> None:
        if self.node_id in self._members.get(self._known_upto, ()):
            if len(self._queue) >= MAX_FORWARDED_QUEUE:
                self._count("forward_dropped", len(msg.items))  # the sender retries
                return
            self._queue.extend(msg.items)
            self._blocked = ""
        else:
            self._count("forward_refused")

    # ------------------------------------------------------------------
    # catch-up and liveness

    def _ping(self, now: float) -> None:
        for peer, since in list(self._observers.items()):
            if now - since > 3 * self.ping_interval:
                del self._observers[peer]
        peers = self._window_peers()
        peers.update(self._observers)
        peers.discard(self.node_id)
        msg = self._own_ping()
        last_ping = self._last_ping
        for peer in sorted(peers):
            # Sent even to peers we talk to anyway: only PING carries our
            # decided seqn, which laggards need to ask for what they miss.
            if now - last_ping.get(peer, float("-inf")) >= self.ping_interval:
                last_ping[peer] = now
                self._send(peer, msg)

    def _own_ping(self) -> Ping:
        """This node's heartbeat: decided seqn, frontier and suspects."""
        return Ping(self._next_out - 1, self._frontier, self.suspects)

    def _on_ping(self, sender: str, msg: Ping, now: float) -> None:
        self.peer_decided[sender] = msg.decided
        self.peer_suspects[sender] = (msg.suspects, now)
        if sender not in self._window_peers():
            self._observers[sender] = now
        if msg.decided < self._next_out - 1 and now - self._last_sent.get(sender, float("-inf")) >= self.fill:
            self._send(sender, self._own_ping())  # help a laggard
        elif msg.decided >= self._next_out:
            self._catch_up(now)

    def _catch_up(self, now: float) -> None:
        if now - self._want_at < self.fill or not self.peer_decided:
            return
        # Ask the most advanced peer heard from lately (a crashed one keeps
        # its last PING's figure forever) whose log may hold what we miss.
        ahead, servers = self._ahead(now)
        if not servers:
            if ahead:
                # Behind peers none of which keeps what we miss: only a
                # snapshot brings us up.
                self.snapshot_needed = True
            return
        best, peer = max(servers)
        self._want_at = now
        self._send(peer, Want(self._next_out, min(best + 1, self._next_out + WANT_BATCH)))

    def heard_lately(self, peer: str, now: float) -> bool:
        """Whether ``peer`` spoke within three PING intervals (a crashed or
        stopped peer keeps its last figures forever)."""
        return self.last_heard.get(peer, float("-inf")) >= now - 3 * self.ping_interval

    def _ahead(self, now: float) -> tuple[list, list]:
        """The peers heard from lately that decided beyond us, as
        ``(decided, peer)``; and those of them whose log may still hold our
        next seqn (one that answered TOO_OLD above it cannot: logs only lose
        their old end)."""
        nxt = self._next_out
        ahead = [
            (d, p)
            for p, d in self.peer_decided.items()
            if d >= nxt and self.heard_lately(p, now)
        ]
        floors = self._peer_oldest
        return ahead, [(d, p) for d, p in ahead if floors.get(p, 0) <= nxt]

    def _beyond(self, sender: str, s: int) -> None:
        """A message for an instance beyond our window: we are behind."""
        self._count("beyond_window")
        # The sender knows M(s), so it has applied at least s - alpha.
        if s - self.alpha > self.peer_decided.get(sender, 0):
            self.peer_decided[sender] = s - self.alpha

    def _on_want(self, sender: str, msg: Want, now: float) -> None:
        start = max(msg.start, 1)
        if start < self._log_oldest and start < self._next_out:
            self._send(sender, TooOld(start, self._log_oldest))
            return
        budget = 4 * self.max_value
        for s in range(start, min(msg.upto, start + WANT_BATCH)):
            v = self._value_of(s)
            if v is None:
                continue
            self._send(sender, Learn(s, v))
            budget -= len(v)
            if budget <= 0:
                break

    def _on_learn(self, sender: str, msg: Learn, now: float) -> None:
        s = msg.seqn
        if s < self._next_out or s in self._decided or s > self._next_out + self.retain:
            return
        self._decide(s, msg.value)

    def install(self, floor_seqn: int, members_by_seqn: dict[int, Sequence[str]]) -> list[bytes]:
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
        floor = floor_seqn
        settled: list[bytes] = []
        for s in [s for s in self._instances if s <= floor]:
            inst = self._instances.pop(s)
            self._coord.pop(s, None)
            if inst.items is not None:  # own, decided or not, not handed out
                settled.extend(inst.items)
                if not inst.decided:
                    self._inflight -= 1
        settled.extend(self._forwarded)
        self._forwarded.clear()
        for s in range(floor + 1, self._next_out):
            if s in self._log:  # installing behind what we handed out
                self._decided[s] = self._log[s]
        self._decided = {s: v for s, v in self._decided.items() if s > floor}
        self._log = {}
        self._log_oldest = floor + 1
        self._next_out = floor + 1
        self._members = {s: m for s, m in self._members.items() if s > floor}
        for s, m in members_by_seqn.items():
            if s > floor and m:
                self._members[s] = tuple(m)
        self._known_upto = floor
        while self._known_upto + 1 in self._members:
            self._known_upto += 1
            # A membership change the snapshot brings is skipped to as if
            # this node had applied it (the voting gap).
            self._skip_to_membership(self._known_upto)
        self._cursor = max(self._cursor, floor + 1)
        self._frontier = max(self._frontier, floor)
        self.snapshot_needed = False
        self._blocked = ""
        self._count("snapshot_installs")
        return settled

    def _on_too_old(self, sender: str, msg: TooOld, now: float) -> None:
        if msg.oldest <= self._next_out:
            return
        # The sender's log starts beyond what we miss (it joined by snapshot
        # lately, or keeps little). A snapshot replaces our whole state and
        # empties our own log, so others lagging would then need one from
        # us in turn: first ask a peer whose log may still reach back.
        floors = self._peer_oldest
        if floors.get(sender, 0) < msg.oldest:
            floors[sender] = msg.oldest
            if len(floors) > 64:  # peers come and go (a restart is a new id)
                for gone in [p for p in floors if not self.heard_lately(p, now)]:
                    del floors[gone]
        self._count("too_old")
        if self._ahead(now)[1]:
            self._want_at = float("-inf")  # ask one of them at the next tick
        else:
            self.snapshot_needed = True

    # ------------------------------------------------------------------
    # diagnosis

    def debug_state(self, instances: int = 8) -> dict:
        """:meth:`stats` plus the owner's cursors and the first undecided
        instances of the window (who owns them, what was promised, accepted
        and voted): what one needs to see why a log does not move."""
        state = self.stats()
        state.update(
            next_out=self._next_out,
            log_oldest=self._log_oldest,
            cursor=self._cursor,
            skip_upto=self._skip_upto,
            blocked=self._blocked,
            early=len(self._early),
            forwarded=len(self._forwarded),
            decided_ahead=sorted(self._decided)[:instances],
            suspects=list(self.suspects),
            peer_suspects={p: {"suspects": list(s), "at": t} for p, (s, t) in self.peer_suspects.items()},
        )
        open_ = []
        s = self._next_out
        while len(open_) < instances and s <= self._known_upto:
            if s not in self._decided:
                inst = self._instances.get(s)
                entry: dict = {"seqn": s, "owner": self._owner(s)}
                if inst is not None:
                    entry.update(
                        promised=list(inst.promised),
                        accepted=list(inst.accepted_ballot) if inst.accepted_ballot else None,
                        phase=inst.phase,
                        ballot=list(inst.ballot) if inst.ballot else None,
                        votes={f"{b[0]}:{b[1]}": sorted(v) for (b, _), v in inst.votes.items()},
                        promises=sorted(inst.promises),
                        open_since=inst.open_since,
                        wanted_at=inst.wanted_at,
                    )
                open_.append(entry)
            s += 1
        state["open"] = open_
        state["now"] = self._now
        return state
