"""The HTTP channel's output (doozer/server/http/sending.py): an answer is
sent at once when nothing is queued, the answers of one read in one send,
and in order behind whatever the kernel did not take; never directly under
TLS.

Over a real loopback socket pair: Twisted's TCP transport on one end (a
``MemoryReactor`` for its turns), a plain socket for the client.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Iterator

import pytest
from twisted.internet import abstract, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactor

from limitsutil import Front, answers, http


@pytest.fixture
def f() -> Front:
    return Front()


class SocketTCP(tcp.Connection):
    """Twisted's TCP transport over a real loopback socket, its reactor a
    MemoryReactor (which records who waits to write): what the channel's
    direct sends meet in production, without running a reactor."""

    def __init__(self, sock: socket.socket, reactor: MemoryReactor) -> None:
        super().__init__(sock, None, reactor)  # type: ignore[arg-type]
        self.connected = 1
        self.sends = 0
        self.startReading()

    def writeSomeData(self, data: bytes) -> Any:
        self.sends += 1
        return super().writeSomeData(data)

    # Queued as a plain connection's, whatever ``TLS`` says (the channel
    # only reads the flag; real TLS would encrypt here).
    def write(self, data: bytes) -> None:
        abstract.FileDescriptor.write(self, data)

    def writeSequence(self, iovec: Any) -> None:
        abstract.FileDescriptor.writeSequence(self, iovec)

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 8046)


@pytest.fixture
def wire(f: Front) -> Iterator[tuple[SocketTCP, socket.socket, MemoryReactor]]:
    """A connection of ``f`` over loopback TCP: (server transport, client socket, reactor)."""
    yield from open_wire(f)


def open_wire(f: Front, tls: bool = False) -> Iterator[tuple[SocketTCP, socket.socket, MemoryReactor]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.socket()
    # Small buffers (set before the handshake, which fixes the window) so
    # that the kernel takes only part of a few hundred KiB.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    client.connect(listener.getsockname())
    server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    listener.close()
    reactor = MemoryReactor()
    transport = SocketTCP(server, reactor)
    transport.TLS = tls
    protocol = f.factory.buildProtocol(transport.getPeer())
    transport.protocol = protocol
    protocol.makeConnection(transport)
    yield transport, client, reactor
    client.close()
    server.close()


def drain(client: socket.socket, transport: SocketTCP, reactor: MemoryReactor) -> bytes:
    """Everything the client can read, letting the transport send what it
    queued (its writable turns, as the reactor would give them)."""
    client.setblocking(False)
    got = b""
    while True:
        try:
            chunk = client.recv(1 << 20)
        except BlockingIOError:
            if transport not in reactor.getWriters():
                return got
            transport.doWrite()
            continue
        if not chunk:
            return got
        got += chunk


def test_an_answer_goes_out_at_once_without_a_writable_turn(f: Front, wire: Any) -> None:
    """A GET's answer is on the wire when the read that asked is served: no
    wait for the reactor to find the socket writable, one send."""
    transport, client, reactor = wire
    f.node.set("/a", b"1")
    f.settle()
    transport.protocol.dataReceived(http("/v1/store/a"))
    assert transport not in reactor.getWriters() and not transport.dataBuffer
    assert transport.sends == 1
    got = answers(client.recv(65536))
    assert got[0][0] == 200 and json.loads(got[0][2])["value"] == "1"


def test_a_connection_under_tls_is_never_sent_to_directly(f: Front) -> None:
    """A TCP connection that started TLS encrypts in its ``write``: the
    channel leaves its bytes to it (its socket would get them in clear)."""
    wire = open_wire(f, tls=True)
    transport, client, reactor = next(wire)
    transport.protocol.dataReceived(http("/v1/store/"))
    assert transport.sends == 0 and transport in reactor.getWriters()
    wire.close()


def test_pipelined_answers_of_one_read_go_in_one_send(f: Front, wire: Any) -> None:
    """The answers to one read's requests leave together, in order; one
    served by twisted.web first sends what the lean ones held back."""
    transport, client, reactor = wire
    for i in range(3):
        f.node.set(f"/p{i}", b"%d" % i)
    f.settle()
    transport.protocol.dataReceived(
        http("/v1/store/p0") + http("/v1/store/p1") + http("/v1/store/p2"))
    assert transport.sends == 1
    transport.protocol.dataReceived(
        http("/v1/store/p0") + http("/v1/stat/p1") + http("/v1/store/p2"))
    got = answers(drain(client, transport, reactor))
    assert [a[0] for a in got] == [200] * 6
    values = [json.loads(a[2]).get("value") for a in got]
    assert values == ["0", "1", "2", "0", None, "2"]
    assert json.loads(got[4][2])["path"] == "/p1"  # the stat's answer, in its place
    assert transport.sends == 3  # the corked GET, then twisted.web's queue with the last GET


def test_what_the_kernel_does_not_take_is_queued_and_later_answers_go_behind(
        f: Front, wire: Any) -> None:
    """Big answers fill the socket: the rest waits for writable turns, and
    a watch answered meanwhile is queued behind them, not sent ahead."""
    transport, client, reactor = wire
    big = b"x" * 30000
    f.node.set("/big", big)
    f.settle()
    rev = f.node.store.rev
    transport.protocol.dataReceived(
        http("/v1/store/big?raw=1") * 100 + http(f"/v1/watch?glob=/w&rev={rev + 1}"))
    assert transport in reactor.getWriters()  # the kernel took only part of 3 MB
    f.node.set("/w", b"now")
    f.settle()
    got = answers(drain(client, transport, reactor))
    assert [a[0] for a in got] == [200] * 101
    assert all(a[2] == big for a in got[:100])
    assert json.loads(got[100][2])["events"][0]["value"] == "now"


def test_a_client_gone_mid_answer_costs_no_error(f: Front, wire: Any) -> None:
    """The peer reset the connection: the direct send fails quietly and the
    transport's next turn finds the connection lost, as before."""
    transport, client, reactor = wire
    f.node.set("/a", b"1")
    f.settle()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST
    for _ in range(3):
        transport.protocol.dataReceived(http("/v1/store/a"))
    if transport in reactor.getWriters():
        assert isinstance(transport.doWrite(), ConnectionLost)
