"""The options of SPEC §12 about clients (``twistd doozer``), and how the
node's service wires them into its ports: shared limits, Host rules per port,
ALPN under TLS, and the file-descriptor fit."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from doozer.server.limits import FD_RESERVE, Limits
from doozer.server.tap import Options


def config(*argv: str) -> Any:
    opts = Options()
    opts.parseOptions(list(argv))
    return opts["config"]


def test_defaults() -> None:
    """Without options: 10,000 connections, 1,000 per IP, 10 s, 4 MiB, 1,000 outstanding,
    no extra hosts or origins."""
    c = config()
    assert (c.max_conns, c.max_conns_per_ip, c.request_timeout, c.max_output, c.max_outstanding) == (
        10_000, 1_000, 10.0, 4 * 1024 * 1024, 1_000)
    assert (c.allowed_hosts, c.cors_origins) == ([], [])


def test_every_limit_and_its_default_is_in_help() -> None:
    """--help names every client limit with its default."""
    text = " ".join(str(Options()).split())  # help lines are wrapped
    for name, default in [("max-conns", "10000"), ("max-conns-per-ip", "1000"),
                          ("request-timeout", "10"), ("max-output", "4194304"),
                          ("max-outstanding", "1000")]:
        described = text.split(f"--{name}=")[1].split(" --")[0]
        assert f"[default: {default}]" in described, name
    assert "--allowed-hosts=" in text and "--cors-origin=" in text


def test_values_are_parsed_and_normalised() -> None:
    """Lists are comma-separated; hosts are lower-cased, origins put in browser form."""
    c = config("--max-conns", "20", "--max-conns-per-ip", "5", "--request-timeout", "0.5",
               "--max-output", "65536", "--max-outstanding", "7",
               "--allowed-hosts", "Doozer.Example, 10.0.0.9:80,*",
               "--cors-origin", "https://App.Example:443,http://localhost:3000")
    assert (c.max_conns, c.max_conns_per_ip, c.request_timeout, c.max_output, c.max_outstanding) == (
        20, 5, 0.5, 65536, 7)
    assert c.allowed_hosts == ["doozer.example", "10.0.0.9:80", "*"]
    assert c.cors_origins == ["https://app.example", "http://localhost:3000"]


@pytest.mark.parametrize("argv, says", [
    (("--max-conns", "0"), "--max-conns"),
    (("--max-conns-per-ip", "x"), "--max-conns-per-ip"),
    (("--request-timeout", "-1"), "--request-timeout"),
    (("--max-output", "0"), "--max-output"),
    (("--allowed-hosts", "not a host"), "--allowed-hosts"),
    (("--cors-origin", "app.example"), "--cors-origin"),
])
def test_bad_values_are_refused_with_the_option_named(argv: tuple[str, ...], says: str) -> None:
    """A bad limit is a start-up error naming the option."""
    with pytest.raises(usage.UsageError, match=says):
        config(*argv)


class FakeResource:
    """``resource`` with a soft and a hard file-descriptor limit."""

    RLIMIT_NOFILE = 7
    RLIM_INFINITY = -1

    def __init__(self, soft: int, hard: int) -> None:
        self.limits = (soft, hard)

    def getrlimit(self, which: int) -> tuple[int, int]:
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        if limits[0] > self.limits[1]:
            raise ValueError("over the hard limit")
        self.limits = limits


def test_fd_limit_is_raised_to_fit_max_conns() -> None:
    """The soft descriptor limit is raised so that --max-conns connections fit."""
    limits = Limits(Clock(), max_conns=10_000)
    fake = FakeResource(1024, 1 << 20)
    limits.fit_fd_limit(fake)
    assert fake.limits[0] == 10_000 + FD_RESERVE and limits.max_conns == 10_000


def test_max_conns_is_lowered_when_the_fds_cannot_fit_it() -> None:
    """Under a hard limit too small, --max-conns is lowered (and logged), so a flood is
    refused by the limit before the process runs out of descriptors."""
    limits = Limits(Clock(), max_conns=10_000)
    fake = FakeResource(1024, 4096)
    limits.fit_fd_limit(fake)
    assert fake.limits[0] == 4096 and limits.max_conns == 4096 - FD_RESERVE


# ----------------------------------------------------------------------
# the service's wiring


class NoUDP(MemoryReactorClock):
    """A MemoryReactorClock that also takes the node's UDP port (and sends nothing)."""

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:
        class Port:
            def stopListening(self) -> None:
                pass

        return Port()


def test_service_ports_share_one_limits_with_their_own_host_rules() -> None:
    """Both client ports share one Limits (one count, one set of counters); each
    port answers its own address, the WebView's port has no doozerd protocol."""
    from doozer.server.service import NodeService

    reactor = NoUDP()
    svc = NodeService(config("--max-conns", "50", "--web", "127.0.0.1:8001",
                             "--allowed-hosts", "doozer.example"), reactor)
    svc.startService()
    try:
        ports = {port: factory for port, factory, *_ in reactor.tcpServers}
        api, web = ports[8046], ports[8001]
        assert api.limits is web.limits is svc.limits and svc.limits.max_conns == 50
        assert api.http.hosts.host_allowed("127.0.0.1", 8046)
        assert not api.http.hosts.host_allowed("127.0.0.1", 8001)
        assert web.http.hosts.host_allowed("localhost", 8001)
        assert web.http.hosts.host_allowed("doozer.example", 443)
        assert web.native is None and api.native.max_outstanding == 1000
        assert api.http.limits is svc.limits and api.native.counters is svc.limits.counters
    finally:
        svc.stopService()


def test_tls_port_selects_http11_by_alpn(tmp_path: Any) -> None:
    """With --tls-cert the API port's TLS selects http/1.1 for a client offering
    h2 and http/1.1 (curl's default), and serves it (in memory; a real
    handshake is in test_limits_process)."""
    from twisted.internet import ssl
    from twisted.internet.address import IPv4Address
    from twisted.internet.protocol import Factory
    from twisted.protocols.tls import TLSMemoryBIOFactory
    from twisted.test import iosim

    from doozer.server.service import NodeService
    from doozer.server.sniff import SniffingFactory, TLSFactory
    from procutil import self_signed_cert
    from tlsutil import Recorder

    cert, key = self_signed_cert(tmp_path)
    reactor = NoUDP()
    svc = NodeService(config("--web", "false", "--tls-cert", cert, "--tls-key", key), reactor)
    svc.startService()
    try:
        (_, factory, *_), = reactor.tcpServers
        assert isinstance(factory, TLSFactory) and isinstance(factory.wrappedFactory, SniffingFactory)
        addr = IPv4Address("TCP", "127.0.0.1", 40000)
        client_tls = TLSMemoryBIOFactory(
            ssl.CertificateOptions(acceptableProtocols=[b"h2", b"http/1.1"]), True,
            Factory.forProtocol(Recorder), clock=reactor,
        )
        server, client = factory.buildProtocol(addr), client_tls.buildProtocol(addr)
        pump = iosim.connect(
            server, iosim.FakeTransport(server, isServer=True, peerAddress=addr),
            client, iosim.FakeTransport(client, isServer=False), clock=reactor,
        )
        client.wrappedProtocol.transport.write(
            b"GET /v1/rev HTTP/1.1\r\nHost: 127.0.0.1:8046\r\n\r\n")
        for _ in range(5):
            pump.flush()
            reactor.advance(0)  # TLS gathers small writes for one turn of the clock
        assert client.negotiatedProtocol == b"http/1.1"
        assert client.wrappedProtocol.data.startswith(b"HTTP/1.1 200")
    finally:
        svc.stopService()
