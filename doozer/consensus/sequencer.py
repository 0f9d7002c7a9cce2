"""The sequencer: a window of Paxos instances with rotating owners (Mencius).

Sans-I/O: inputs are :meth:`Sequencer.propose`, :meth:`~Sequencer.receive`,
:meth:`~Sequencer.tick` / :meth:`~Sequencer.flush` and
:meth:`~Sequencer.set_members`, each given the current time ``now``; outputs
are drained with :meth:`~Sequencer.take_outbox` (messages to send) and
:meth:`~Sequencer.take_decided` (decided batches, strictly in seqn order).
:meth:`~Sequencer.next_wakeup` says when to call :meth:`~Sequencer.tick`.

Rule numbers refer to ``CONSENSUS.md``; ``docs/consensus.md`` maps them to
this code. Messages a node sends to itself are handled internally (never
through the outbox), so a one-member cluster decides a proposal inside one
:meth:`~Sequencer.flush`, through the same Paxos code with a quorum of one.

The work is done by collaborators the sequencer holds: the owner's
proposals (:mod:`~doozer.consensus.proposer`), the acceptor, the revoker,
catch-up, held early messages, and the learner with the log of decided
values (:mod:`~doozer.consensus.decided`).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from doozer.consensus.acceptor import Acceptor
from doozer.consensus.catchup import CatchUp
from doozer.consensus.decided import LOG_ENTRY_OVERHEAD, RETAIN_BYTES, DecidedLog
from doozer.consensus.diagnostics import debug_state
from doozer.consensus.durable import Durability, Record
from doozer.consensus.early import EarlyMessages
from doozer.consensus.instance import Instance
from doozer.consensus.messages import (
    ENVELOPE_OVERHEAD,
    ITEM_OVERHEAD,
    Accept,
    Accepted,
    Forward,
    Learn,
    Message,
    Nack,
    Ping,
    Prepare,
    Promise,
    Skip,
    TooOld,
    Want,
)
from doozer.consensus.proposer import Proposer
from doozer.consensus.revoker import Revoker

# The log's bounds live with the log (doozer/consensus/decided.py); they are
# named here too, where they were first.
__all__ = ["LOG_ENTRY_OVERHEAD", "RETAIN_BYTES", "Sequencer"]


class Sequencer:
    """Orders proposed items into a log of decided instances.

    :param node_id: this node's id (a restarted process always has a new one).
    :param genesis: ``M(s)`` for the first ``alpha`` instances (may be empty
        for a node that will :meth:`install` a snapshot).
    :param alpha: the membership delay α, fixed for the cluster.
    :param fill: seconds an instance others wait on may stay open before it
        is asked for (WANT) and then revoked; also the retransmit period.
    :param rng: the only source of randomness (seeded in tests).
    :param first_seqn: the first instance this node will hand out.
    :param max_value: size limit in bytes of one instance's value plus
        :data:`~doozer.consensus.messages.ENVELOPE_OVERHEAD`; the default
        keeps every datagram under 65,507 bytes and admits a 60,000-byte
        file body with its path.
    :param max_inflight: own instances proposed but not yet decided; beyond
        it, items wait and are batched together (pipelining with back-pressure).
    :param ping_interval: heartbeat period when there is nothing else to say.
    :param retain: decided values kept after hand-out to answer WANT, at least.
    :param retain_seconds: also keep every value handed out within this many
        seconds: a node that copied a snapshot meanwhile (seconds, in which a
        busy cluster decides thousands of instances) goes on from the log.
    :param retain_bytes: but never more than about this many bytes of
        values: the log's memory bound, whatever peers send or the rate.
    :param now: the time of creation (peers count as heard at this time).
    :param durable: the durable mode (CONSENSUS.md §D, :mod:`durable
        <doozer.consensus.durable>`): records to write, messages held until
        they are synced, ballots and the owner's cursor of this
        incarnation. None (the default) is the memory-only mode, unchanged.
    """

    def __init__(
        self,
        node_id: str,
        *,
        genesis: Sequence[str],
        alpha: int = 50,
        fill: float = 0.1,
        rng: random.Random,
        first_seqn: int = 1,
        max_value: int = 64_000,
        max_inflight: int = 16,
        ping_interval: float = 1.0,
        retain: int = 1000,
        retain_seconds: float = 0.0,
        retain_bytes: int = RETAIN_BYTES,
        now: float = 0.0,
        durable: Optional[Durability] = None,
    ) -> None:
        if alpha < 1 or first_seqn < 1:
            raise ValueError("alpha and first_seqn must be >= 1")
        self.node_id = node_id
        self.alpha = alpha
        self.fill = fill
        self.rng = rng
        self.max_value = max_value
        self.max_inflight = max_inflight
        self.ping_interval = ping_interval
        self.retain = retain
        self.retain_seconds = retain_seconds
        self.retain_bytes = retain_bytes
        self._members: dict[int, tuple[str, ...]] = {}
        self._known_upto = first_seqn - 1  # highest s whose M(s) is known
        if genesis:
            g = tuple(genesis)
            for s in range(first_seqn, first_seqn + alpha):
                self._members[s] = g
            self._known_upto = first_seqn - 1 + alpha
        self._next_out = first_seqn  # next seqn take_decided hands out
        self._instances: dict[int, Instance] = {}
        self._decided: dict[int, bytes] = {}  # decided, not yet handed out
        #: the learner, and the values handed out, kept for catch-up
        self.decided_log = DecidedLog(self, first_seqn)
        self._queue: list[bytes] = []
        # Why queued items wait: "" (they don't), "window" (no own instance
        # left in the window), "inflight" (max_inflight reached) or "nobody"
        # (a non-member that knows no member to forward to).
        self._blocked = ""
        self._cursor = first_seqn  # own instances below it are used or skipped
        self._skip_upto = 0  # rule 5/6: skip own unused instances below this
        self._inflight = 0
        self._frontier = first_seqn - 1  # highest seqn seen proposed or decided
        self._outbox: list[tuple[str, Message]] = []
        self._local: deque[Message] = deque()
        self._now = now
        self._last_scan = now
        self._want_at = float("-inf")
        self.snapshot_needed = False
        self.last_heard: dict[str, float] = {}
        self.peer_decided: dict[str, int] = {}
        # Members this node has heard nothing from for --timeout (set by the
        # node's membership chores; sent in every PING), and each peer's
        # last such list with when it arrived.
        self.suspects: tuple[str, ...] = ()
        self.peer_suspects: dict[str, tuple[tuple[str, ...], float]] = {}
        # Peer -> the oldest seqn its log held when it answered TOO_OLD.
        self._peer_oldest: dict[str, int] = {}
        self._last_sent: dict[str, float] = {}
        self._last_ping: dict[str, float] = {}
        self._observers: dict[str, float] = {}
        self._forwarded: dict[bytes, list[float]] = {}  # item -> [first sent, last sent]
        # ACCEPT/ACCEPTED for instances just beyond our window, handled once
        # the window reaches them: (seqn, sender, message), bounded.
        self.early = EarlyMessages(self)
        # Owners whose instances this node revoked while they were silent,
        # and when: revoked ahead until they speak (Revoker.revoke_silent_ahead).
        self._silent_owners: dict[str, float] = {}
        self._ahead_from = first_seqn
        self._proposed_at = float("-inf")  # when an owner last proposed
        self.counters: dict[str, int] = {}
        self._created = now
        # Instances this node coordinates (proposes as owner, or revokes).
        self._coord: dict[int, Instance] = {}
        self.acceptor = Acceptor(self)
        self.revoker = Revoker(self)
        self.catchup = CatchUp(self)
        self.proposer = Proposer(self)
        self._handlers = self._make_handlers()
        self.durable = durable
        if durable is not None:
            # What is sent waits for the records it may reveal.
            self._send = durable.send  # type: ignore[method-assign]
            durable.attach(self)

    # ------------------------------------------------------------------
    # public interface

    def propose(self, item: bytes, now: float) -> None:
        """Queue one item; it is cut into an instance at the next flush/tick.

        :raises ValueError: when the item alone cannot fit in one instance.
        """
        if len(item) + ITEM_OVERHEAD + ENVELOPE_OVERHEAD > self.max_value:
            raise ValueError(f"item of {len(item)} bytes exceeds the value limit")
        self._queue.append(item)

    def receive(self, sender: str, message: Message, now: float) -> None:
        """Handle one message from ``sender`` (already authenticated)."""
        self._now = now
        if sender != self.node_id:
            self.last_heard[sender] = now
        handler = self._handlers.get(type(message))
        if handler is None:
            self._count("unknown_message")
            return
        handler(sender, message, now)
        self._drain_local(now)

    def tick(self, now: float) -> None:
        """Run due timers (retransmit, WANT, revoke, ping) and flush."""
        self._now = now
        if now >= self._last_scan + self._scan_interval():
            self._last_scan = now
            self.revoker.retransmit(now)
            self.revoker.scan_open(now)
            self.catchup.catch_up(now)
            self.catchup.resend_forwards(now)
            self.catchup.ping(now)
        self.flush(now)

    def flush(self, now: float) -> None:
        """Send pending skips and cut queued items into instances."""
        self._now = now
        if self.early and self.early.ready():
            self.early.replay(now)
        if self._cursor < self._next_out:
            self._cursor = self._next_out
        if self._silent_owners and self._known_upto >= self._ahead_from:
            self.revoker.revoke_silent_ahead(now, only_new=True)
        while True:
            # Skips first: after a membership change the skip closes the
            # voting gap, and items cut into the gap's instances would need
            # the old membership's quorum (a kill right after a claim then
            # stopped the cluster for good: fault suite, claimkill, under
            # load).
            if self.proposer.skip_pending():
                self.proposer.skip(now)
            if self._queue:
                self.proposer.cut(now)
            self._drain_local(now)
            if self.revoker.parked and self.revoker.release(now):
                self._drain_local(now)
            # Local decisions (a one-member cluster) may have made room for
            # more; otherwise everything left is blocked or sent.
            if not (self.proposer.skip_pending() or (self._queue and not self._blocked)):
                break

    def hand_off(self, now: float) -> None:
        """The node is leaving: from now on give up its unused instances
        (:meth:`Proposer.hand_off <doozer.consensus.proposer.Proposer.hand_off>`)."""
        self.proposer.hand_off()
        self.flush(now)

    def set_members(self, seqn: int, members: Iterable[str]) -> None:
        """Record ``M(seqn)``; the node calls it with ``seqn = s + alpha``
        after applying instance ``s``. The first value given for a seqn wins.

        When the membership changes at ``seqn``, a member skips its unused
        instances below ``seqn`` at once (the voting gap, CONSENSUS.md):
        until the log reaches ``seqn`` the cluster has the fault tolerance of
        the old membership, and on an idle cluster it would wait there for
        α instances to be used one write at a time."""
        m = tuple(members)
        if not m:
            self._count("members_empty")
            return
        old = self._members.get(seqn)
        if old is not None:
            if old != m:
                self._count("members_conflict")
            return
        if seqn >= self._next_out:  # below it, M is no longer needed
            prev = self._members.get(seqn - 1)
            self._members[seqn] = prev if prev == m else m  # share equal tuples
            self._skip_to_membership(seqn)
        # Decisions may be handed out before the node applies them, so the
        # window is contiguous over known M(s) and already handed-out seqns.
        while self._known_upto + 1 in self._members or self._known_upto + 1 < self._next_out:
            self._known_upto += 1
        self._blocked = ""

    def _skip_to_membership(self, seqn: int) -> None:
        """If ``M(seqn)`` differs from ``M(seqn - 1)`` and this node votes in
        the latter, skip its unused instances below ``seqn`` (the voting gap)."""
        prev = self._members.get(seqn - 1)
        m = self._members.get(seqn)
        if prev is None or m is None or prev == m or self.node_id not in prev:
            return
        if seqn > self._skip_upto:
            self._skip_upto = seqn
            self._count("membership_skips")

    def take_outbox(self) -> list[tuple[str, Message]]:
        """Messages to send, as ``(destination node id, message)``."""
        out, self._outbox = self._outbox, []
        return out

    def take_decided(self) -> list[tuple[int, list[bytes]]]:
        """Decided instances not yet handed out, contiguous and in seqn order
        (:meth:`DecidedLog.take <doozer.consensus.decided.DecidedLog.take>`);
        what the log brings may end the need for a snapshot
        (:meth:`CatchUp.handed_out <doozer.consensus.catchup.CatchUp.handed_out>`)."""
        out = self.decided_log.take()
        if out and self.snapshot_needed:
            self.catchup.handed_out()
        return out

    def next_wakeup(self) -> Optional[float]:
        """When :meth:`tick` should next run (``now`` means at once)."""
        if (
            self._local
            or (self._queue and not self._blocked)
            or self.proposer.skip_pending()
            or (self.early and self.early.ready())
        ):
            return self._now
        return self._last_scan + self._scan_interval()

    def install(self, floor_seqn: int, members_by_seqn: Mapping[int, Sequence[str]]) -> list[bytes]:
        """Adopt a snapshot made by applying instances up to ``floor_seqn``
        (:meth:`CatchUp.install <doozer.consensus.catchup.CatchUp.install>`).

        In durable mode the new floor is a record (D7): the node deletes
        acceptor records at or below it only once that record is synced
        (``durable.collectable``), and must have the snapshot on disk first."""
        if self.durable is not None:
            self.durable.raise_floor(floor_seqn)
        return self.catchup.install(floor_seqn, members_by_seqn)

    # -- durable mode (CONSENSUS.md §D; docs/consensus.md "Durability") --

    def take_records(self) -> tuple[int, list[Record]]:
        """Durable mode: the records to append, and the token to pass to
        :meth:`synced` once they and every earlier one are fsynced. Drain it
        after every call that may send (like :meth:`take_outbox`)."""
        assert self.durable is not None, "take_records is for the durable mode"
        return self.durable.take_records()

    def synced(self, token: int, now: float) -> None:
        """Durable mode: every record up to ``token`` is on disk
        (:meth:`Durability.synced <doozer.consensus.durable.Durability.synced>`)."""
        assert self.durable is not None, "synced is for the durable mode"
        self.durable.synced(token, now)

    def raise_floor(self, floor_seqn: int) -> None:
        """Durable mode: the node saved a snapshot of its store at
        ``floor_seqn`` (at most :attr:`decided_seqn`) and wants to drop the
        acceptor records at or below it (D7): it may once
        ``durable.collectable`` reaches it."""
        assert self.durable is not None, "raise_floor is for the durable mode"
        self.durable.raise_floor(min(floor_seqn, self._next_out - 1))

    def heard_lately(self, peer: str, now: float) -> bool:
        """Whether ``peer`` spoke within three PING intervals."""
        return self.catchup.heard_lately(peer, now)

    def debug_state(self, instances: int = 8) -> dict[str, Any]:
        """The state one needs to see why a log does not move
        (:func:`doozer.consensus.diagnostics.debug_state`)."""
        return debug_state(self, instances)

    def is_member(self, seqn: Optional[int] = None) -> bool:
        """Whether this node votes in instance ``seqn`` (default: the next one)."""
        m = self._members.get(self._next_out if seqn is None else seqn)
        return m is not None and self.node_id in m

    def members(self, seqn: int) -> Optional[tuple[str, ...]]:
        """``M(seqn)`` if known (within the window), else None."""
        return self._members.get(seqn)

    def members_after(self, seqn: int) -> dict[int, list[str]]:
        """``M(s)`` for ``s`` in ``(seqn, seqn + alpha]``: what a snapshot made
        at ``seqn`` carries so that its installer computes the same ``M(s)``.

        :raises LookupError: when one of them is not known here.
        """
        out = {}
        for s in range(seqn + 1, seqn + self.alpha + 1):
            m = self._members.get(s)
            if m is None:
                raise LookupError(f"membership of seqn {s} is not known here")
            out[s] = list(m)
        return out

    @property
    def decided_seqn(self) -> int:
        """The highest seqn handed out by :meth:`take_decided`."""
        return self._next_out - 1

    def stats(self) -> dict[str, Any]:
        """Figures for the cluster endpoint and the WebView."""
        return {
            "decided": self._next_out - 1,
            "frontier": self._frontier,
            "window": self._known_upto,
            "member": self.is_member(),
            "members": list(self._members.get(self._next_out, ())),
            "queued": len(self._queue),
            "inflight": self._inflight,
            "coordinating": len(self._coord),
            "last_heard": dict(self.last_heard),
            "peer_decided": dict(self.peer_decided),
            "observers": sorted(self._observers),
            "snapshot_needed": self.snapshot_needed,
            "counters": dict(self.counters),
        }

    # ------------------------------------------------------------------
    # plumbing

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _deliver(self, dest: str, message: Message) -> None:
        """To the outbox, or to this node's own handlers when addressed to
        it: what ``_send`` does in the memory-only mode, and in durable
        mode once the message need not (or no longer) wait."""
        if dest == self.node_id:
            self._local.append(message)
        else:
            self._outbox.append((dest, message))
            self._last_sent[dest] = self._now

    #: Every message goes out through ``_send``: :meth:`_deliver` itself in
    #: the memory-only mode, ``Durability.send`` in durable mode.
    _send = _deliver

    def _bcast(self, dests: Iterable[str], message: Message) -> None:
        for dest in dests:
            self._send(dest, message)

    def _drain_local(self, now: float) -> None:
        me = self.node_id
        local = self._local
        handlers = self._handlers
        while local:
            message = local.popleft()
            handlers[type(message)](me, message, now)

    def _inst(self, s: int) -> Optional[Instance]:
        """The instance ``s`` if it lies in the window (creating it), else None."""
        inst = self._instances.get(s)
        if inst is None and self._next_out <= s <= self._known_upto:
            inst = self._instances[s] = Instance(s, self._members[s])
            durable = self.durable
            if durable is not None and durable.recovered is not None:
                durable.recovered.restore(inst)  # its acceptor state from before a restart
        return inst

    def _owner(self, s: int) -> Optional[str]:
        m = self._members.get(s)
        return None if m is None else m[s % len(m)]

    def window_members(self) -> set[str]:
        """Every node that votes somewhere in the window (members of the
        next instance and of the last one known)."""
        return self._window_peers()

    def _window_peers(self) -> set[str]:
        peers = set(self._members.get(self._next_out, ()))
        peers.update(self._members.get(self._known_upto, ()))
        return peers

    def _scan_interval(self) -> float:
        busy = (
            self._coord
            or self._frontier >= self._next_out
            or self._forwarded
            or self._queue
            or self._behind()
        )
        return self.fill / 2 if busy else self.ping_interval / 2

    def _behind(self) -> bool:
        return any(d >= self._next_out for d in self.peer_decided.values())

    def _make_handlers(self) -> dict[type, Callable[[str, Any, float], None]]:
        return {
            Accept: self.acceptor.on_accept,
            Skip: self.acceptor.on_skip,
            Prepare: self.acceptor.on_prepare,
            Promise: self.revoker.on_promise,
            Nack: self.revoker.on_nack,
            Accepted: self.decided_log.on_accepted,
            Learn: self.catchup.on_learn,
            Want: self.catchup.on_want,
            Ping: self.catchup.on_ping,
            Forward: self.catchup.on_forward,
            TooOld: self.catchup.on_too_old,
        }
