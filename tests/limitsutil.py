"""A node's client ports in memory, with TCP-like transports, on a Clock.

:class:`FakeTCP` behaves like Twisted's TCP transport where the limits
care: it holds what was written until the client reads it, tells its
registered producer when its buffer passes ``bufferSize`` (and when it has
been read empty), can be paused and resumed (stop reading), and has a
``protocol`` attribute the sniffer re-points. :class:`Front` is a
one-member node behind the sniffer with :class:`doozer.server.limits.Limits`,
like ``twistd doozer``'s API port, whose connections the tests open.
"""

from __future__ import annotations

import heapq
from typing import Any, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.base import DelayedCall
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from doozer.server.http.api import API
from doozer.server.hosts import HostPolicy
from doozer.server.auth import Secrets
from doozer.server.http.site import Site
from doozer.server.limits import Limits
from doozer.server.doozerd.protocol import NativeFactory
from doozer.server.sniff import SniffingFactory
from doozer.testing import single_node
from nativeutil import decode_all, encode

PORT = 8046
ADDR = ("127.0.0.1", PORT)


class FakeTCP(StringTransport):
    """A server-side transport that buffers output like TCP's (see module docstring)."""

    bufferSize = 65536

    def __init__(self, ip: str = "127.0.0.1", port: int = 40000) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", ip, port), lenient=True)
        self.protocol: Any = None
        self.producer_paused = False
        self.lost = False

    def write(self, data: bytes) -> None:
        super().write(data)
        self._maybe_pause()

    def writeSequence(self, data: Any) -> None:
        super().writeSequence(data)
        self._maybe_pause()

    def _maybe_pause(self) -> None:
        if self.producer is not None and self.streaming and len(self.io.getvalue()) > self.bufferSize:
            self.producer_paused = True
            self.producer.pauseProducing()

    def unregisterProducer(self) -> None:
        self.producer = None  # like TCP's: no error when there is none

    @property
    def reading(self) -> bool:
        return self.producerState == "producing"

    @property
    def unsent(self) -> int:
        return len(self.io.getvalue())

    def read_all(self) -> bytes:
        """The client reads everything; the transport tells its producer it is empty."""
        data = self.value()
        self.clear()
        if self.producer is not None and self.producer_paused:
            self.producer_paused = False
            self.producer.resumeProducing()
        return data

    def lose(self) -> None:
        """The client goes away; like TCP's, the transport lets go of its protocol and producer."""
        if not self.lost:
            self.lost = True
            protocol, self.protocol = self.protocol, None
            if self.producer is not None:
                self.producer.stopProducing()
                self.producer = None
            protocol.connectionLost(Failure(ConnectionDone()))


class HeapClock(Clock):
    """A Clock whose ``callLater`` costs O(log n), for tens of thousands of timers.

    Twisted's ``Clock`` sorts its list of calls on every ``callLater``;
    this one keeps a heap, skips cancelled calls when they come up and, as
    the reactor does, rebuilds the heap once most of it is cancelled (so
    cancelled calls are not kept alive).
    """

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._seq = 0
        self._cancelled = 0

    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> DelayedCall:
        call = DelayedCall(self.seconds() + delay, f, args, kw, self._cancel, self._push,
                           seconds=self.seconds)
        self._push(call)
        return call

    def _push(self, call: DelayedCall) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (call.getTime(), self._seq, call))

    def _cancel(self, call: DelayedCall) -> None:
        self._cancelled += 1
        if self._cancelled > 50 and self._cancelled > len(self._heap) // 2:
            self._heap = [e for e in self._heap if not e[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def getDelayedCalls(self) -> list[DelayedCall]:
        return [e[2] for e in self._heap if not (e[2].cancelled or e[2].called)]

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        while self._heap and self._heap[0][0] <= self.rightNow:
            when, _, call = heapq.heappop(self._heap)
            if call.cancelled:
                self._cancelled = max(0, self._cancelled - 1)
                continue
            if call.called or when != call.getTime():
                continue  # ran already, or was reset (pushed again)
            call.called = 1
            call.func(*call.args, **call.kw)


class Conn:
    """One client connection of a :class:`Front`."""

    def __init__(self, front: "Front", transport: FakeTCP) -> None:
        self.front = front
        self.transport = transport
        self.received = b""

    def send(self, data: bytes) -> None:
        self.transport.protocol.dataReceived(data)

    def send_native(self, **fields: Any) -> None:
        self.send(encode(**fields))

    def read(self) -> bytes:
        self.received += self.transport.read_all()
        return self.received

    def responses(self) -> list[Any]:
        return decode_all(self.read())[0]

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    @property
    def aborted(self) -> bool:
        return bool(self.transport.disconnected)

    @property
    def protocol(self) -> Any:
        return self.transport.protocol


def http(path: str, method: str = "GET", host: str = f"127.0.0.1:{PORT}", **headers: str) -> bytes:
    """One raw HTTP/1.1 request (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Front:
    """A one-member node on a Clock behind its API port's sniffer, with limits.

    :param limits: :class:`~doozer.server.limits.Limits` settings.
    :param hosts: :class:`~doozer.server.hosts.HostPolicy` keywords; None: no Host rules.
    :param rw: the read-write secret, if any.
    :param clock: the Clock (e.g. a :class:`HeapClock` for many timers).
    """

    def __init__(self, hosts: Optional[dict[str, Any]] = None, rw: Optional[bytes] = None,
                 clock: Optional[Clock] = None, **limits: Any) -> None:
        self.clock = clock or Clock()
        self.node = single_node(self.clock)
        self.limits = Limits(self.clock, **limits)
        policy = None
        if hosts is not None:
            policy = HostPolicy(ADDR, counters=self.limits.counters, **hosts)
        self.site = Site(
            API(self.node, secrets=Secrets(rw)).resource(), max_body=32768,
            limits=self.limits, hosts=policy, node=self.node,
        )
        self.site.reactor = self.clock
        self.native = NativeFactory(self.node, secrets=Secrets(rw), limits=self.limits)
        self.factory = SniffingFactory(self.site, self.native, self.limits)

    def connect(self, ip: str = "127.0.0.1", factory: Any = None) -> Optional[Conn]:
        """A new connection from ``ip``, or None when the port refuses it."""
        factory = factory or self.factory
        transport = FakeTCP(ip)
        protocol = factory.buildProtocol(transport.getPeer())
        if protocol is None:
            return None
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return Conn(self, transport)

    def settle(self) -> None:
        """Let the node decide what was proposed."""
        for _ in range(5):
            self.clock.advance(0)

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """Let ``seconds`` pass, in steps (the deadline sweep runs in between)."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() + step < end:
            self.clock.advance(step)
        self.clock.advance(end - self.clock.seconds())


def answers(data: bytes, heads: tuple[int, ...] = ()) -> list[tuple[int, dict[str, str], bytes]]:
    """The responses in ``data``: status, headers (lower-case names), body;
    the answers numbered in ``heads`` answer HEAD requests (no body)."""
    out: list[tuple[int, dict[str, str], bytes]] = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if status == 100 or len(out) in heads:
            length = 0
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out
