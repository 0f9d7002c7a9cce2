"""The node's crank: one pump per reactor turn drives the sequencer.

Everything proposed or received in one reactor turn is handled in one pump
(so it shares one instance: batching for free). A pump ticks the sequencer,
hands its records to the data dir (their fsync runs while the outbox is
sent), sends the outbox with one datagram per peer, applies what was
decided, answers the writers, and sets the timer for the sequencer's next
wake-up.

The pump always runs through :meth:`Node._pump <doozer.node.node.Node._pump>`,
so the simulators can wrap that one method to observe every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from doozer.consensus.messages import Bundle, Message

if TYPE_CHECKING:
    from doozer.node.node import Node


class Pump:
    """Runs a node's consensus turns and its wake-up timer."""

    log = Logger()

    def __init__(self, node: "Node") -> None:
        self._node = node
        self._call: Optional[IDelayedCall] = None
        self._tick_call: Optional[IDelayedCall] = None
        self._tick_at: Optional[float] = None
        self._voting = False  # whether the last pump found this node voting

    def schedule(self) -> None:
        """Run a pump at the end of this reactor turn (once however often asked)."""
        if self._call is None:
            self._call = self._node.clock.callLater(0, self._fire)

    def _fire(self) -> None:
        self._node._pump()

    def stop(self) -> None:
        """Cancel the pending pump and tick."""
        for call in (self._call, self._tick_call):
            if call is not None and call.active():
                call.cancel()
        self._call = self._tick_call = None

    def run(self) -> None:
        """One turn: tick, write records, send, apply, answer, re-arm."""
        self._call = None
        node = self._node
        replica = node.replica
        if replica is None or node.failed is not None:
            return
        sequencer = replica.sequencer
        sequencer.tick(node.clock.seconds())
        storage = node.storage
        if storage is not None:
            # The records first: their fsync runs while the outbox is sent.
            storage.write_records(sequencer)
        self.send_outbox(sequencer.take_outbox())
        try:
            for seqn, items, outcomes in replica.apply_decided():
                for callback in node.on_applied:
                    callback(seqn, items, outcomes)
                node.writes.applied(outcomes)
        except Exception:
            # The store sets its seqn first, so it names the failed instance.
            self.log.failure("applying instance {seqn} failed", seqn=node.store.seqn)
            node._fail(f"applying instance {node.store.seqn} failed (a bug)")
            return
        if storage is not None:
            storage.write_records(sequencer)
        if sequencer.is_member() != self._voting:
            self._voting = not self._voting
            if self._voting:
                self.log.info(
                    "doozer node {id} votes in cluster {cluster!r} from seqn {seqn} on",
                    id=node.id,
                    cluster=node.cluster,
                    seqn=node.applied_seqn + 1,
                )
        self.schedule_tick()

    def send_outbox(self, outbox: list[tuple[str, Message]]) -> None:
        """Send a turn's messages: everything for one peer in one datagram.

        A Bundle keeps their order: the ACCEPTED and SKIP an ACCEPT provokes,
        or the many messages of a busy turn, cost one send, not several."""
        node = self._node
        node.peers.round_trips.sent(outbox, node.clock.seconds())
        send = node._send
        if len(outbox) == 1:
            send(*outbox[0])
            return
        by_dest: dict[str, list[Message]] = {}
        for dest, message in outbox:
            queue = by_dest.get(dest)
            if queue is None:
                by_dest[dest] = [message]
            else:
                queue.append(message)
        for dest, queue in by_dest.items():
            send(dest, queue[0] if len(queue) == 1 else Bundle(tuple(queue)))

    def schedule_tick(self) -> None:
        """Wake the sequencer when it asks to be (its timers: fill, resend)."""
        node = self._node
        when = node.require_sequencer().next_wakeup()
        if when is None or not node.running:
            return
        if self._tick_call is not None and self._tick_call.active():
            if self._tick_at is not None and self._tick_at <= when:
                return
            self._tick_call.cancel()
        self._tick_at = when
        delay = max(0.0, when - node.clock.seconds())
        self._tick_call = node.clock.callLater(delay, self._on_tick)

    def _on_tick(self) -> None:
        self._tick_call = None
        self._tick_at = None
        self._node._pump()
