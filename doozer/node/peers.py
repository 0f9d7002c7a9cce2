"""What a node takes from its peers: the screening of consensus and
discovery datagrams before they reach the sequencer (SPEC §12).

Without a cluster key (and without ``--insecure-peers``) nothing
authenticates a datagram's sender, so only CAL members are heard: a
datagram from a non-member changes nothing. Even from a trusted node, a
FORWARD may carry only its sender's own requests, and from a non-member
only the bookkeeping a joining node does.

A collaborator of :class:`doozer.node.node.Node`, which holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from doozer.addr import Addr
from doozer.consensus.messages import Accepted, Forward, Message
from doozer.node.stats import RoundTrips
from doozer.store import mutation
from doozer.store.cal import slot_of_path

if TYPE_CHECKING:  # the node holds this collaborator; typing only
    from doozer.node.node import Node


class Peers:
    """The node's door for datagrams from peers (called by the transport).

    :param node: the node it screens for (it holds this collaborator).
    """

    def __init__(self, node: "Node") -> None:
        self.node = node
        #: whether datagrams from non-members are heard (a cluster key
        #: authenticates them, or --insecure-peers says so)
        self.trust_outsiders = False
        #: message type -> handler(sender, message, source address), for
        #: discovery messages (set by :class:`doozer.node.discovery.Discovery`)
        self.discovery_handlers: dict[type, Callable[[str, Any, Addr], None]] = {}
        #: how long each peer takes to answer this node's ACCEPTs (/metrics);
        #: the node tells it what it sends, this door what comes back
        self.round_trips = RoundTrips(node.id)

    def receive(self, sender: str, message: Message) -> None:
        """A consensus message from a peer (called by the transport).

        Without a cluster key (and without ``--insecure-peers``) only CAL
        members are heard: nothing authenticates anyone else, so a datagram
        from a non-member changes nothing (SPEC §12). A FORWARD may carry
        only its sender's own requests, and from a non-member only the
        bookkeeping a joining node does (its record, a claim of a slot).
        """
        node = self.node
        sequencer = node.sequencer
        if sequencer is None or node.failed is not None:
            return  # not in a cluster (yet, or any more): nothing for us
        if not self.trust_outsiders and not self._is_member_id(sender):
            self._count("non_member_dropped")
            return
        storage = node.storage
        if storage is not None and storage.backlogged:
            # the disk is far behind: take no work that needs it (the
            # peer sends again); bounds the records and held messages
            self._count("disk_backlog_dropped")
            return
        if type(message) is Forward:
            screened = self._screen_forward(sender, message)
            if screened is None:
                return
            message = screened
        now = node.clock.seconds()
        if type(message) is Accepted:
            self.round_trips.received(sender, message, now)
        sequencer.receive(sender, message, now)
        node.schedule_pump()

    def receive_discovery(self, sender: str, message: Message, addr: Addr) -> None:
        """A discovery message (Hello, Status) from the address ``addr``;
        answers go to that address only, never to one written inside."""
        handler = self.discovery_handlers.get(type(message))
        if handler is not None:
            handler(sender, message, addr)

    def _is_member_id(self, node_id: str) -> bool:
        """Whether ``node_id`` holds a CAL slot or votes in the window."""
        node = self.node
        if node_id in node.store.cal():
            return True
        seq = node.sequencer
        return seq is not None and node_id in seq.window_members()

    def _screen_forward(self, sender: str, message: Forward) -> Optional[Forward]:
        """The forwarded items a member may propose for ``sender``."""
        member = self._is_member_id(sender)
        kept = []
        for item in message.items:
            try:
                m = mutation.Mutation.decode(item)
            except mutation.MalformedMutation:
                m = None
            if m is not None and m.origin == sender and (member or _joiner_may_write(sender, m)):
                kept.append(item)
            else:
                self._count("forward_refused")
        if not kept:
            return None
        return message if len(kept) == len(message.items) else Forward(tuple(kept))

    def _count(self, name: str) -> None:
        counters = self.node.counters
        counters[name] = counters.get(name, 0) + 1


def _joiner_may_write(sender: str, m: mutation.Mutation) -> bool:
    """What a non-member writes for itself: its own ``/ctl/node`` record,
    claiming a CAL slot for itself, and no-ops."""
    if m.kind == mutation.NOP:
        return True
    if m.path.startswith(f"/ctl/node/{sender}/"):
        return True
    return slot_of_path(m.path) is not None and m.kind == mutation.SET and m.value == sender.encode()
