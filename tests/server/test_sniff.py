"""One port, two protocols: the first byte picks HTTP or doozerd's protocol.

In memory: the sniffing factory in front of the node's real HTTP ``Site``
and native factory, over ``iosim`` (whose transport, like TCP's, can be
re-pointed at the chosen protocol), a plain ``StringTransport`` (which
cannot: forwarding) and in-memory TLS.
"""

from __future__ import annotations

import pytest
from twisted.internet import ssl
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim

from doozer.server.http.api import API
from doozer.server.http.channel import Channel
from doozer.server.http.site import Site
from doozer.server.doozerd.protocol import NativeFactory, NativeProtocol
from doozer.server.sniff import SniffingFactory, SniffingProtocol
from doozer.testing import single_node
from nativeutil import decode_all, encode, err
from tlsutil import Recorder, certificate

ADDR = IPv4Address("TCP", "127.0.0.1", 40000)
HTTP_REV = b"GET /v1/rev HTTP/1.1\r\nHost: x\r\n\r\n"


class Server:
    """A one-member node behind the sniffing factory, on a Clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.node = single_node(self.clock)
        self.site = Site(API(self.node).resource(), max_body=32768)
        self.site.reactor = self.clock  # HTTP timeouts on the test clock
        self.native = NativeFactory(self.node)
        self.factory = SniffingFactory(self.site, self.native)

    def connect(self) -> tuple[Recorder, iosim.FakeTransport, iosim.IOPump]:
        server = self.factory.buildProtocol(ADDR)
        server_transport = iosim.FakeTransport(server, isServer=True, peerAddress=ADDR)
        client = Recorder()
        client_transport = iosim.FakeTransport(client, isServer=False)
        pump = iosim.connect(server, server_transport, client, client_transport, clock=self.clock)
        return client, server_transport, pump

    def flush(self, pump: iosim.IOPump) -> None:
        for _ in range(4):
            pump.flush()
            self.clock.advance(0)


@pytest.fixture
def s() -> Server:
    return Server()


def test_http_request_goes_to_the_http_api(s: Server) -> None:
    """A connection starting with a letter is served by the HTTP API."""
    client, _, pump = s.connect()
    client.transport.write(HTTP_REV)
    s.flush(pump)
    assert client.data.startswith(b"HTTP/1.1 200")
    assert b'"rev":' in client.data


def test_native_request_goes_to_the_native_protocol(s: Server) -> None:
    """A connection starting with 0x00 is served by doozerd's protocol."""
    client, _, pump = s.connect()
    client.transport.write(encode(tag=1, verb="REV"))
    s.flush(pump)
    (r,), rest = decode_all(client.data)
    assert (r.tag, r.rev, rest) == (1, s.node.store.rev, b"")


def test_after_the_choice_the_transport_delivers_to_the_chosen_protocol(s: Server) -> None:
    """Once chosen, the protocol is the transport's own: no forwarding layer remains."""
    client, server_transport, pump = s.connect()
    assert isinstance(server_transport.protocol, SniffingProtocol)
    client.transport.write(encode(tag=1, verb="REV"))
    s.flush(pump)
    assert isinstance(server_transport.protocol, NativeProtocol)
    assert server_transport.protocol.transport is server_transport

    client2, transport2, pump2 = s.connect()
    client2.transport.write(HTTP_REV)
    s.flush(pump2)
    assert isinstance(transport2.protocol, Channel)  # no generic wrapper either
    assert transport2.protocol.transport is transport2


def test_http_keep_alive_serves_several_requests(s: Server) -> None:
    """Later HTTP requests on the same connection reach the HTTP channel too."""
    client, _, pump = s.connect()
    for _ in range(3):
        client.transport.write(HTTP_REV)
        s.flush(pump)
    assert client.data.count(b"HTTP/1.1 200") == 3


def test_first_bytes_one_at_a_time(s: Server) -> None:
    """The choice is made on the first byte even when the rest comes later, byte by byte."""
    client, _, pump = s.connect()
    frame = encode(tag=4, verb="SELF")
    for i in range(len(frame)):
        client.transport.write(frame[i : i + 1])
        s.flush(pump)
    (r,), _ = decode_all(client.data)
    assert r.value == s.node.id.encode()

    client, _, pump = s.connect()
    for i in range(len(HTTP_REV)):
        client.transport.write(HTTP_REV[i : i + 1])
        s.flush(pump)
    assert client.data.startswith(b"HTTP/1.1 200")


def test_forwarding_when_the_transport_cannot_be_repointed(s: Server) -> None:
    """On a transport without a protocol attribute, bytes and the end are forwarded."""
    transport = StringTransport(peerAddress=ADDR)
    sniffer = s.factory.buildProtocol(ADDR)
    sniffer.makeConnection(transport)
    sniffer.dataReceived(encode(tag=1, verb="REV")[:3])
    sniffer.dataReceived(encode(tag=1, verb="REV")[3:])
    (r,), _ = decode_all(transport.value())
    assert r.tag == 1 and err(r) is None
    chosen = sniffer.chosen
    assert isinstance(chosen, NativeProtocol) and chosen in s.native.connections
    sniffer.connectionLost(None)
    assert chosen not in s.native.connections


def test_garbage_that_is_not_a_request_gets_http_400_and_close(s: Server) -> None:
    """Bytes that are neither protocol and do not start with 0x00 get HTTP's 400 and a close."""
    client, _, pump = s.connect()
    client.transport.write(b"\xff\xfe\x01garbage\r\n\r\n")
    s.flush(pump)
    assert client.data.startswith(b"HTTP/1.1 400")
    assert client.lost


def test_garbage_starting_with_zero_closes(s: Server) -> None:
    """Garbage starting with 0x00 is a malformed doozerd frame: closed; the node keeps serving."""
    client, _, pump = s.connect()
    client.transport.write(b"\x00\x00\x00\x04\xff\xff\xff\xff")
    s.flush(pump)
    assert client.lost and client.data == b""
    other, _, pump2 = s.connect()
    other.transport.write(HTTP_REV)
    s.flush(pump2)
    assert other.data.startswith(b"HTTP/1.1 200")


def test_client_leaving_before_a_byte(s: Server) -> None:
    """A client that connects and leaves without a byte costs nothing and breaks nothing."""
    sniffer = s.factory.buildProtocol(ADDR)
    sniffer.makeConnection(StringTransport())
    sniffer.connectionLost(None)
    assert s.native.connections == set()


def test_factory_starts_and_stops_both(s: Server) -> None:
    """Starting the sniffing factory starts both wrapped factories (and stopping stops them)."""
    s.factory.doStart()
    assert s.site.numPorts == 1 and s.native.numPorts == 1
    s.factory.doStop()
    assert s.site.numPorts == 0 and s.native.numPorts == 0


# ----------------------------------------------------------------------
# TLS: the choice is made on the first byte inside TLS


@pytest.mark.parametrize("kind", ["native", "http"])
def test_tls_wraps_both_protocols(s: Server, kind: str) -> None:
    """Under TLS each protocol is chosen by the first decrypted byte and served."""
    server_tls = TLSMemoryBIOFactory(certificate().options(), False, s.factory, clock=s.clock)
    client_tls = TLSMemoryBIOFactory(
        ssl.CertificateOptions(), True, Factory.forProtocol(Recorder), clock=s.clock
    )
    server = server_tls.buildProtocol(ADDR)
    client = client_tls.buildProtocol(ADDR)
    pump = iosim.connect(
        server, iosim.FakeTransport(server, isServer=True, peerAddress=ADDR),
        client, iosim.FakeTransport(client, isServer=False), clock=s.clock,
    )
    recorder = client.wrappedProtocol
    recorder.transport.write(encode(tag=9, verb="REV") if kind == "native" else HTTP_REV)
    s.flush(pump)
    if kind == "native":
        (r,), _ = decode_all(recorder.data)
        assert r.tag == 9 and r.rev == s.node.store.rev
        assert isinstance(server.wrappedProtocol, NativeProtocol)
    else:
        assert recorder.data.startswith(b"HTTP/1.1 200")
        assert isinstance(server.wrappedProtocol, Channel)
