"""The UDP transport: consensus messages in datagrams, authenticated and bounded.

The body of every datagram is :func:`doozer.consensus.messages.pack` of the
cluster name, the cluster id, the sender's id, the sender's datagram counter
and the message. Without a cluster key a frame is ``version 1 | body``. With
one it is sealed (:mod:`doozer.consensus.seal`): encrypted and authenticated
with ChaCha20-Poly1305, bound to the sender, its incarnation and the
destination node, and checked before anything in it is parsed; a node with
a key refuses unsealed frames, and one without refuses sealed ones.

Every datagram that is oversized, malformed, unauthenticated, addressed to
another node, of another cluster (name or id: an earlier incarnation),
looped back, or a replay (a counter already seen from that sender, within a
sliding window) is counted in :attr:`UDPTransport.stats` and dropped;
nothing a peer sends can make this class raise. Per-sender replay state and
the pre-connection send queue are bounded, so a flood cannot grow memory
without limit.

The protocol does no I/O in ``__init__``: the node calls
:meth:`UDPTransport.listen` (``listenUDP`` with a 64 KiB receive buffer;
Twisted's default of 8 KiB would truncate large batches).
"""

from __future__ import annotations

import socket
from collections import OrderedDict, deque
from typing import Any, Callable, Optional, Protocol, Sequence, Union

from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from doozer.addr import Addr

from doozer.consensus import messages
from doozer.consensus.messages import Message
from doozer.consensus.seal import SEALED, Seal

#: The version byte of an unsealed frame (no cluster key).
VERSION = 1
_VERSION_BYTE = bytes([VERSION])

#: The largest UDP payload over IPv4.
MAX_DATAGRAM = 65_507

#: Kernel socket buffers asked for (the kernel caps them at
#: ``net.core.rmem_max`` / ``wmem_max``). Linux's default of ~208 KiB holds
#: only a few hundred datagrams: a node busy for a few milliseconds under
#: load would lose some, and every loss stalls the ordered log for a
#: retransmission period (``fill``).
SOCKET_BUFFER = 4 * 1024 * 1024

#: Receive buffer per datagram. Twisted's default ``maxPacketSize`` is 8192:
#: larger datagrams would arrive truncated (and fail the HMAC), so listen
#: with :meth:`UDPTransport.listen` or pass this to ``listenUDP``.
MAX_PACKET = 65_536

Address = Addr  # (host, port)


class FaultRules(Protocol):
    """What the diagnostics show of the TEST-ONLY fault hook
    (:class:`doozer.server.faults.FaultFile`) when it is installed."""

    def debug_state(self) -> dict[str, Any]:
        """The rules held and what they dropped."""

_STAT_NAMES = (
    "received",
    "delivered",
    "sent",
    "oversized",
    "truncated",
    "bad_version",
    "unauthenticated",
    "malformed",
    "misaddressed",
    "foreign_cluster",
    "looped",
    "replayed",
    "no_address",
    "send_oversized",
    "send_errors",
    "queue_dropped",
    "deliver_errors",
)


def _bundle(parts: tuple[Message, ...]) -> Message:
    return parts[0] if len(parts) == 1 else messages.Bundle(parts)


class _ReplayWindow:
    """Counters seen from one sender: the highest, and a bitmask below it;
    and how many of its datagrams were taken and refused as replays (what
    ``/_peer/consensus`` shows of each sender); and the address its last
    datagram taken came from."""

    __slots__ = ("highest", "mask", "taken", "replayed", "source")

    def __init__(self) -> None:
        self.highest = -1
        self.mask = 0
        self.taken = 0
        self.replayed = 0
        self.source: Optional[Address] = None

    def check_and_set(self, counter: int, size: int) -> bool:
        """True (and remember it) when ``counter`` was not seen before."""
        if counter > self.highest:
            shift = counter - self.highest
            self.mask = ((self.mask << shift) | 1) & ((1 << size) - 1) if shift < size else 1
            self.highest = counter
            return True
        offset = self.highest - counter
        if offset >= size:
            return False  # too old to tell: treat as a replay
        bit = 1 << offset
        if self.mask & bit:
            return False
        self.mask |= bit
        return True


class UDPTransport(DatagramProtocol):
    """Sends and receives consensus messages for one node.

    :param cluster_name: the cluster's name (every datagram carries it).
    :param cluster_id: the random id made at genesis; ``None`` until a
        joining node learns it (then datagrams of any id are accepted and
        none can be sent).
    :param node_id: this node's id, the sender of every datagram.
    :param deliver: called with ``(sender, message)`` for each valid datagram.
    :param key: the cluster key, or several (the first seals, every one
        opens); with one every datagram is sealed (SPEC §12).
    :param clock: used once, to start the datagram counter above any a
        previous process with this id could have used.
    :param incarnation: this process's incarnation, sealed into every
        datagram (default: the clock's microseconds at start).
    :param deliver_discovery: called with ``(sender, message, source
        address)`` for discovery messages, whose answer goes to where the
        datagram came from (default: ``deliver``).
    :param max_datagram: size limit for datagrams in both directions.
    :param replay_window: how many recent counters per sender are remembered.
    :param max_peers: senders whose replay state is kept (least recently
        heard are forgotten first).
    :param max_queued: datagrams kept while not yet listening.
    """

    log = Logger()

    def __init__(
        self,
        *,
        cluster_name: str,
        cluster_id: Optional[str],
        node_id: str,
        deliver: Callable[[str, Message], None],
        key: Union[None, bytes, Sequence[bytes]] = None,
        clock: Optional[IReactorTime] = None,
        incarnation: Optional[int] = None,
        deliver_discovery: Optional[Callable[[str, Message, Address], None]] = None,
        max_datagram: int = MAX_DATAGRAM,
        replay_window: int = 4096,
        max_peers: int = 1024,
        max_queued: int = 1024,
    ) -> None:
        self.cluster_name = cluster_name
        self.cluster_id = cluster_id
        self.node_id = node_id
        self.deliver = deliver
        self.deliver_discovery = deliver_discovery
        keys = [key] if isinstance(key, bytes) else list(key or ())
        self._seal = Seal(keys) if keys else None
        self.max_datagram = max_datagram
        self.replay_window = replay_window
        self.max_peers = max_peers
        self.addresses: dict[str, Address] = {}
        self.learned: dict[str, Address] = {}
        self.stats: dict[str, int] = {name: 0 for name in _STAT_NAMES}
        self._windows: OrderedDict[str, _ReplayWindow] = OrderedDict()
        self._sent_to: dict[Address, int] = {}  # datagrams written, per address
        self._pending: deque[tuple[bytes, Address]] = deque(maxlen=max_queued)
        # Microseconds of wall time: above any counter an earlier process
        # with this id used, unless it sent a million datagrams a second.
        self._counter = int(clock.seconds() * 1_000_000) if clock is not None else 0
        self.incarnation = self._counter if incarnation is None else incarnation
        #: the TEST-ONLY fault hook's rules, when the service installed it
        #: (:mod:`doozer.server.faults`); shown by the diagnostics
        self.fault_file: Optional[FaultRules] = None

    def listen(self, reactor: IReactorUDP, port: int, interface: str = "") -> IListeningPort:
        """Listen on ``port`` with a receive buffer large enough for any datagram.

        Called by the node (never from ``__init__``). Also asks the kernel for
        :data:`SOCKET_BUFFER` bytes of socket buffer in each direction.
        """
        listening = reactor.listenUDP(port, self, interface=interface, maxPacketSize=MAX_PACKET)
        sock = getattr(listening, "socket", None)
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
                except OSError:  # pragma: no cover - refused: keep the default
                    pass
        return listening

    # -- addresses ---------------------------------------------------------

    def set_address(self, node_id: str, addr: Address) -> None:
        """Where ``node_id`` listens (from the store's node records)."""
        self.addresses[node_id] = addr

    def address_of(self, node_id: str) -> Optional[Address]:
        """The configured address of a peer, else the one it last sent from."""
        return self.addresses.get(node_id) or self.learned.get(node_id)

    def taken_from(self, node_id: str) -> int:
        """How many datagrams of ``node_id`` were taken so far (0 when it was
        never heard, or forgotten): a count that stops moving means the peer
        went silent (what :class:`doozer.node.names.NameBook` watches)."""
        window = self._windows.get(node_id)
        return 0 if window is None else window.taken

    def source_of(self, node_id: str) -> Optional[Address]:
        """The ``(host, port)`` the last datagram taken from ``node_id`` came
        from (None: never heard, or forgotten). A named peer heard from
        elsewhere than its name resolved to has moved: look it up again."""
        window = self._windows.get(node_id)
        return None if window is None else window.source

    # -- sending -----------------------------------------------------------

    def frame(self, message: Message, destination: Optional[str] = None) -> bytes:
        """The datagram carrying ``message`` to node ``destination`` (None:
        to an address whose node is not known; advances the counter)."""
        self._counter += 1
        body = messages.pack(
            self.cluster_name,
            self.cluster_id or messages.NO_CLUSTER,
            self.node_id,
            self._counter,
            message,
        )
        if self._seal is None:
            return _VERSION_BYTE + body
        return self._seal.seal(
            body,
            sender=self.node_id,
            incarnation=self.incarnation,
            counter=self._counter,
            destination=destination,
        )

    def send(self, dest: str, message: Message) -> bool:
        """Send ``message`` to node ``dest``; False when it was dropped.

        A :class:`~doozer.consensus.messages.Bundle` too large for one
        datagram is sent as several smaller ones; the peer delivers each
        message of a bundle separately, in order.
        """
        addr = self.address_of(dest)
        if addr is None:
            self.stats["no_address"] += 1
            return False
        return self.send_to(addr, message, dest)

    def send_to(self, addr: Address, message: Message, dest: Optional[str] = None) -> bool:
        """Send ``message`` to an address: to node ``dest`` there, or, for
        discovery (which knows no ids yet), to whoever answers at it."""
        if dest is None and not isinstance(message, messages.DISCOVERY):
            self.stats["send_errors"] += 1
            return False
        if self.cluster_id is None and not isinstance(message, messages.DISCOVERY):
            self.stats["send_errors"] += 1
            return False
        if type(message) is messages.Bundle and len(message.messages) > messages.MAX_BUNDLE:
            # Receivers refuse longer bundles whole, however few bytes they
            # take: thousands of 8-byte LEARNs fit one datagram.
            parts = message.messages
            step = messages.MAX_BUNDLE
            sent = [
                self.send_to(addr, _bundle(parts[i : i + step]), dest)
                for i in range(0, len(parts), step)
            ]
            return all(sent)
        data = self.frame(message, dest)
        if len(data) > self.max_datagram:
            if type(message) is messages.Bundle and len(message.messages) > 1:
                # Too much for one datagram together: send it in two halves.
                half = len(message.messages) // 2
                first = self.send_to(addr, _bundle(message.messages[:half]), dest)
                second = self.send_to(addr, _bundle(message.messages[half:]), dest)
                return first and second
            self.stats["send_oversized"] += 1
            return False
        if self.transport is None:
            if len(self._pending) == self._pending.maxlen:
                self.stats["queue_dropped"] += 1
            self._pending.append((data, addr))
            return True
        return self._write(data, addr)

    def _write(self, data: bytes, addr: Address) -> bool:
        transport = self.transport
        assert transport is not None  # only called once listening
        try:
            transport.write(data, addr)
        except OSError:
            # A full socket buffer or an unreachable peer: UDP may drop, and
            # the consensus core retransmits.
            self.stats["send_errors"] += 1
            return False
        self.stats["sent"] += 1
        sent_to = self._sent_to
        key = (addr[0], addr[1])  # an IPv6 address has two more fields
        sent_to[key] = sent_to.get(key, 0) + 1
        if len(sent_to) > self.max_peers:
            sent_to.pop(next(iter(sent_to)))
        return True

    def startProtocol(self) -> None:
        """Listening: send what was queued before."""
        while self._pending:
            self._write(*self._pending.popleft())

    # -- receiving -----------------------------------------------------------

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        """Validate one datagram and deliver its message; never raises."""
        stats = self.stats
        stats["received"] += 1
        if len(data) > self.max_datagram:
            stats["oversized"] += 1
            return
        limit = getattr(self.transport, "maxPacketSize", None)
        if limit is not None and len(data) >= limit:
            # Filled the receive buffer: the kernel truncated it.
            stats["truncated"] += 1
            return
        if not data or data[0] not in (VERSION, SEALED):
            stats["bad_version"] += 1
            return
        seal = self._seal
        to_address = False
        sealed_by: Optional[str] = None  # the sender the seal names
        if seal is not None:
            opened = seal.open(data, self.node_id)
            if opened is None:  # unsealed, another key, forged, or not for us
                stats["unauthenticated"] += 1
                return
            body, to_address, sealed_by = opened.body, opened.to_address, opened.sender
        elif data[0] == VERSION:
            body = data[1:]
        else:
            stats["unauthenticated"] += 1  # sealed, and we hold no key
            return
        try:
            env = messages.unpack(body)
        except messages.MalformedMessage:
            stats["malformed"] += 1
            return
        discovery = isinstance(env.message, messages.DISCOVERY)
        if sealed_by is not None and (env.sender != sealed_by or (to_address and not discovery)):
            # Only discovery may travel to an address instead of a node.
            stats["misaddressed"] += 1
            return
        if not discovery and (
            env.cluster_name != self.cluster_name
            or self.cluster_id is None
            or env.cluster_id != self.cluster_id
        ):
            # Discovery crosses clusters (the node checks the names);
            # everything else must be of our cluster incarnation.
            stats["foreign_cluster"] += 1
            return
        sender = env.sender
        if sender == self.node_id:
            stats["looped"] += 1
            return
        if not self._fresh(sender, env.counter, addr):
            stats["replayed"] += 1
            return
        if sender not in self.addresses:
            self.learned[sender] = addr  # lets us answer non-members
            if len(self.learned) > self.max_peers:
                self.learned.pop(next(iter(self.learned)))
        stats["delivered"] += 1
        message = env.message
        if discovery and self.deliver_discovery is not None:
            try:
                self.deliver_discovery(sender, message, addr)
            except Exception:
                stats["deliver_errors"] += 1
                self.log.failure("discovery message from {sender} failed", sender=sender)
            return
        for one in message.messages if type(message) is messages.Bundle else (message,):
            try:
                self.deliver(sender, one)
            except Exception:
                # A bug in the node, not the peer's fault: make it loud, keep serving.
                stats["deliver_errors"] += 1
                self.log.failure("consensus message from {sender} failed", sender=sender)

    def _fresh(self, sender: str, counter: int, source: Address) -> bool:
        windows = self._windows
        window = windows.get(sender)
        if window is None:
            window = windows[sender] = _ReplayWindow()
            if len(windows) > self.max_peers:
                windows.popitem(last=False)
        else:
            windows.move_to_end(sender)
        if window.check_and_set(counter, self.replay_window):
            window.taken += 1
            window.source = (source[0], source[1])
            return True
        window.replayed += 1
        return False
