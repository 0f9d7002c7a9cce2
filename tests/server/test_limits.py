"""Client limits in memory (SPEC §12): connections, deadlines, backpressure,
outstanding requests. A one-member node behind the API port's sniffer on a
Clock, with TCP-like fake transports (``limitsutil``): deterministic.
"""

from __future__ import annotations

import re

import pytest
from twisted.internet import ssl
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOFactory

from doozer.server.limits import Limits, OutputGauge, client_key
from doozer.server.sniff import SniffingFactory, TLSFactory
from limitsutil import FakeTCP, Front, http
from nativeutil import encode, err

REV = http("/v1/rev")


def statuses(data: bytes) -> list[int]:
    """The status codes of the HTTP responses in ``data``, in order."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


# ----------------------------------------------------------------------
# connections


def test_over_max_conns_a_new_connection_is_refused_and_others_are_served() -> None:
    """Past --max-conns the port refuses a new connection at once; the open ones keep being served."""
    f = Front(max_conns=3)
    conns = [f.connect(ip=f"127.0.0.{i + 1}") for i in range(3)]
    assert all(conns)
    assert f.connect(ip="127.0.0.9") is None
    assert f.limits.counters["conns_refused_total"] == 1
    conns[0].send(REV)
    assert statuses(conns[0].read()) == [200]
    conns[1].transport.lose()
    assert f.connect(ip="127.0.0.9") is not None  # a place was given back


def test_per_ip_limit_refuses_only_that_address() -> None:
    """Past --max-conns-per-ip one address is refused while another is admitted."""
    f = Front(max_conns_per_ip=2)
    assert f.connect() and f.connect()
    assert f.connect() is None
    assert f.connect(ip="127.0.0.2") is not None
    counters = f.limits.counters
    assert (counters["conns_refused_per_ip"], counters["conns_refused_total"]) == (1, 1)


def test_ipv6_clients_are_counted_by_their_64() -> None:
    """An IPv6 client is counted by its /64 (one host holds a whole /64); a mapped
    IPv4 address as that address."""
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::5") != client_key("2001:db8:1:2::5")
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1" and client_key("10.0.0.1") == "10.0.0.1"
    limits = Limits(Front().clock, max_conns_per_ip=1)
    assert limits.admit(IPv6Address("TCP", "2001:db8::1", 1)) is not None
    assert limits.admit(IPv6Address("TCP", "2001:db8::2", 1)) is None


def test_both_ports_share_one_count() -> None:
    """Connections to the WebView's port count against the same --max-conns as the API's."""
    f = Front(max_conns=2)
    web = SniffingFactory(f.site, None, f.limits)  # an HTTP-only port, as the WebView's
    assert f.connect(factory=web) and f.connect()
    assert f.connect(factory=web) is None and f.connect() is None


def test_connections_that_end_leave_nothing_behind() -> None:
    """Every way a connection ends gives its place back; addresses are forgotten."""
    f = Front(request_timeout=5)
    silent, http_conn, native_conn = f.connect(), f.connect(ip="127.0.0.2"), f.connect(ip="127.0.0.3")
    http_conn.send(REV)
    native_conn.send_native(tag=1, verb="REV")
    assert f.limits.open == 3
    for c in (silent, http_conn, native_conn):
        c.transport.lose()
    assert (f.limits.open, f.limits.per_ip, f.limits._sweep) == (0, {}, None)


def test_tls_factory_passes_a_refusal_on() -> None:
    """Under TLS a refused connection is closed before any handshake (no protocol built)."""
    limits = Limits(Front().clock, max_conns=1)
    inner = SniffingFactory(Factory(), None, limits)
    tls = TLSFactory(ssl.CertificateOptions(), False, inner)
    addr = IPv4Address("TCP", "127.0.0.1", 1)
    assert tls.buildProtocol(addr) is not None
    assert tls.buildProtocol(addr) is None


# ----------------------------------------------------------------------
# deadlines


def test_silent_connection_is_cut_at_the_deadline() -> None:
    """A client that sends no byte within --request-timeout of connecting is cut off."""
    f = Front(request_timeout=10)
    c = f.connect()
    f.advance(9.5)
    assert not c.closed
    f.advance(1.5)
    assert c.aborted
    assert f.limits.counters["request_timeouts"] == 1


def test_trickled_http_head_is_cut_off_though_bytes_keep_coming() -> None:
    """A head sent a byte a second is cut at the deadline: bytes do not extend it (slowloris)."""
    f = Front(request_timeout=10)
    c = f.connect()
    head = http("/v1/rev", X_Padding="p" * 40)
    sent = 0
    while not c.closed and sent < len(head) - 1:
        c.send(head[sent : sent + 1])
        sent += 1
        f.advance(1)
    assert c.closed and sent <= 12
    assert f.limits.counters["request_timeouts"] == 1


def test_first_http_request_is_due_from_connecting() -> None:
    """The first request's deadline runs from connecting, not from its first byte."""
    f = Front(request_timeout=10)
    c = f.connect()
    f.advance(6)
    c.send(b"GET /v1/re")
    f.advance(5)
    assert c.closed


def test_idle_keep_alive_connection_closes_after_the_deadline() -> None:
    """After an answer the next request is due within the timeout; an idle connection is then closed."""
    f = Front(request_timeout=10)
    c = f.connect()
    for _ in range(4):  # one request every 8 s: each answer starts a new deadline
        c.send(REV)
        f.advance(8)
    assert statuses(c.read()) == [200] * 4 and not c.closed
    f.advance(3)
    assert c.closed
    assert f.limits.counters["request_timeouts"] == 1


def test_held_watch_is_not_idle() -> None:
    """A watch held past the deadline keeps its connection; idleness counts after its answer."""
    f = Front(request_timeout=10)
    c = f.connect()
    c.send(http("/v1/watch?glob=/w/**&timeout=300"))
    f.advance(120)
    assert not c.closed and c.read() == b""
    f.node.set("/w/a", b"1")
    f.settle()
    assert statuses(c.read()) == [200]
    f.advance(11)
    assert c.closed


def test_unread_answers_are_not_idleness() -> None:
    """A connection whose client has not yet read our answers is not closed as idle."""
    f = Front(request_timeout=10)
    f.node.set("/big", b"x" * 30000)
    f.settle()
    c = f.connect()
    c.send(http("/v1/store/big?raw=1") * 4)  # 120 KB: past the transport's 64 KiB buffer
    f.advance(30)
    assert not c.closed
    assert statuses(c.read()) == [200] * 4
    f.advance(11)
    assert c.closed


def test_native_partial_frame_is_cut_at_the_deadline() -> None:
    """A doozerd frame begun must arrive whole within the timeout of its first byte."""
    f = Front(request_timeout=10)
    c = f.connect()
    c.send_native(tag=1, verb="REV")
    frame = b"\x00\x00\x00\x10" + b"\x08"  # 16 bytes announced, 1 sent
    c.send(frame)
    f.advance(9)
    assert not c.closed
    f.advance(2)
    assert c.closed
    assert f.limits.counters["request_timeouts"] == 1


def test_first_native_frame_is_due_from_connecting() -> None:
    """The first frame's deadline runs from connecting (the sniffer's), not from its first byte."""
    f = Front(request_timeout=10)
    c = f.connect()
    f.advance(6)
    c.send(b"\x00\x00")
    f.advance(5)
    assert c.closed


def test_idle_native_connection_is_kept() -> None:
    """Between frames a doozerd connection may idle for as long as it likes (its clients never redial)."""
    f = Front(request_timeout=10)
    c = f.connect()
    c.send_native(tag=1, verb="REV")
    f.advance(600)
    assert not c.closed
    c.send_native(tag=2, verb="REV")
    assert [r.tag for r in c.responses()] == [1, 2]


def test_native_wait_outstanding_is_kept() -> None:
    """A connection holding a WAIT is not cut however long the WAIT takes."""
    f = Front(request_timeout=10)
    c = f.connect()
    c.send_native(tag=7, verb="WAIT", path="/w/**", rev=f.node.store.rev + 1)
    f.advance(600)
    assert not c.closed
    f.node.set("/w/x", b"v")
    f.settle()
    (r,) = c.responses()
    assert (r.tag, r.path, r.value) == (7, "/w/x", b"v")


def test_tls_handshake_counts_against_the_deadline() -> None:
    """A TLS client that never finishes its handshake is cut at the deadline."""
    f = Front(request_timeout=10)
    from tlsutil import certificate as _certificate

    tls = TLSMemoryBIOFactory(_certificate().options(), False, f.factory, clock=f.clock)
    transport = FakeTCP()
    protocol = tls.buildProtocol(transport.getPeer())
    transport.protocol = protocol
    protocol.makeConnection(transport)
    protocol.dataReceived(b"\x16\x03\x01")  # the start of a ClientHello, no more
    f.advance(11)
    assert transport.disconnected
    assert f.limits.counters["request_timeouts"] == 1


def test_zero_timeout_turns_deadlines_off() -> None:
    """--request-timeout 0: no deadline at all (and no sweep scheduled)."""
    f = Front(request_timeout=0)
    c = f.connect()
    f.advance(1000, step=10)
    assert not c.closed and f.limits._sweep is None


# ----------------------------------------------------------------------
# backpressure


def test_gauge_counts_only_past_a_full_transport() -> None:
    """The gauge is over only once max_output bytes were written after the transport filled."""
    g = OutputGauge(100)
    g.wrote(1000)
    assert not g.over
    g.transport_full()
    g.wrote(60)
    g.transport_full()  # said again on every write: changes nothing
    g.wrote(60)
    assert g.over
    g.drained()
    assert not g.over and g.written == 0


@pytest.mark.parametrize("kind", ["native", "http"])
def test_a_client_that_does_not_read_stops_being_read(kind: str) -> None:
    """Pipelined requests whose answers are not read: past --max-output the node
    stops taking requests (even already read ones) and reading; as the client
    reads, every request is answered, in order."""
    f = Front(max_output=256 * 1024)
    f.node.set("/big", b"x" * 32000)
    f.settle()
    c = f.connect()
    count = 300  # 9.6 MB of answers
    if kind == "native":
        c.send(b"".join(encode(tag=i, verb="GET", path="/big") for i in range(count)))
    else:
        c.send(http("/v1/store/big?raw=1") * count)
    transport = c.transport
    assert not transport.reading
    assert transport.unsent <= 256 * 1024 + transport.bufferSize + 40000
    assert f.limits.counters["output_paused"] == 1
    answered = 0
    rounds = 0
    while answered < count:
        rounds += 1
        assert transport.unsent <= 256 * 1024 + transport.bufferSize + 40000
        c.read()
        if kind == "native":
            answered = len(c.responses())
        else:
            answered = c.received.count(b"HTTP/1.1 200")
    assert rounds > 10 and transport.reading
    if kind == "native":
        assert [r.tag for r in c.responses()] == list(range(count))


def test_native_answers_to_outstanding_requests_still_go_out_while_not_reading() -> None:
    """A WAIT answered while the connection is not read is still sent (the client is told)."""
    f = Front(max_output=128 * 1024)
    f.node.set("/big", b"x" * 32000)
    f.settle()
    c = f.connect()
    c.send_native(tag=1, verb="WAIT", path="/w", rev=f.node.store.rev + 1)
    c.send(b"".join(encode(tag=i, verb="GET", path="/big") for i in range(2, 40)))
    assert not c.transport.reading
    f.node.set("/w", b"done")
    f.settle()
    assert b"done" in c.transport.value()


def test_native_client_leaving_answers_unread_is_cut_off() -> None:
    """A doozerd client that reads none of its answers for 6 request timeouts is cut off."""
    f = Front(max_output=128 * 1024, request_timeout=10)
    f.node.set("/big", b"x" * 32000)
    f.settle()
    c = f.connect()
    c.send(b"".join(encode(tag=i, verb="GET", path="/big") for i in range(40)))
    assert not c.transport.reading
    f.advance(55)
    assert not c.closed
    f.advance(6)
    assert c.aborted
    assert f.limits.counters["output_stalled"] == 1


def test_native_client_reading_slowly_is_kept() -> None:
    """A doozerd client that does read, however slowly, is not cut off."""
    f = Front(max_output=128 * 1024, request_timeout=10)
    f.node.set("/big", b"x" * 32000)
    f.settle()
    c = f.connect()
    c.send(b"".join(encode(tag=i, verb="GET", path="/big") for i in range(100)))
    while len(c.responses()) < 100:
        f.advance(50)
        assert not c.closed
    assert [r.tag for r in c.responses()] == list(range(100))


# ----------------------------------------------------------------------
# outstanding requests


def test_native_outstanding_requests_past_the_limit_are_refused_busy() -> None:
    """Past --max-outstanding, a request that would wait is answered BUSY at
    once (not served); requests answered at once are still served."""
    f = Front(max_outstanding=5)
    c = f.connect()
    start = f.node.store.rev + 1
    for tag in range(5):
        c.send_native(tag=tag, verb="WAIT", path="/w/**", rev=start)
    c.send_native(tag=10, verb="SET", path="/x", rev=-1, value=b"no")
    c.send_native(tag=11, verb="REV")
    c.send_native(tag=12, verb="GET", path="/x")
    f.settle()
    by_tag = {r.tag: r for r in c.responses()}
    assert err(by_tag[10]) == "OTHER" and by_tag[10].err_detail.startswith("BUSY")
    assert err(by_tag[11]) is None and err(by_tag[12]) is None and by_tag[12].rev == 0
    assert f.node.store.rev == start - 1  # the refused SET was not proposed
    assert f.limits.counters["outstanding_refused"] == 1
    f.node.set("/w/a", b"1")  # answers the WAITs: room again
    f.settle()
    c.send_native(tag=20, verb="SET", path="/x", rev=-1, value=b"yes")
    f.settle()
    by_tag = {r.tag: r for r in c.responses()}
    assert err(by_tag[20]) is None


def test_http_connection_has_one_request_outstanding() -> None:
    """HTTP pipelining is served one request at a time: a held watch holds the rest back."""
    f = Front()
    c = f.connect()
    c.send(http("/v1/watch?glob=/w/**&timeout=300") + REV * 3)
    assert c.read() == b""
    f.node.set("/w/a", b"1")
    f.settle()
    assert statuses(c.read()) == [200] * 4
    assert c.received.index(b'{"events"') < c.received.index(b'\r\n\r\n{"rev"')  # the watch first


def test_an_endless_body_is_answered_413_and_cut_off() -> None:
    """A client streaming a chunked body without end is answered 413 once it
    is far past the cap, and the connection is closed; nothing is written.
    (The process test can only see the close: a client still sending when
    the node closes may get a reset instead of the answer.)"""
    f = Front()
    c = f.connect()
    c.send(http("/v1/store/big", "PUT", Transfer_Encoding="chunked"))
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    sent = 0
    while not c.closed and sent < 64:
        c.send(chunk)
        sent += 1
    assert c.closed and sent < 64
    assert statuses(c.read()) == [413]
    assert "big" not in f.node.store.getdir("/")
