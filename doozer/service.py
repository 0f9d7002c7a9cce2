"""The twistd service of one node: builds it and opens its ports."""

from __future__ import annotations

import base64
import gc
import os
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from doozer.api import API
from doozer.bootstrap import Discovery
from doozer.config import Config, format_addr, parse_addr
from doozer.consensus.transport import UDPTransport
from doozer.fetcher import SnapshotFetcher
from doozer.peer import Snapshot, body_mac_ok, https_agent, peer_headers
from doozer.httputil import Secrets, Site
from doozer.native import NativeFactory
from doozer.node import build_node
from doozer.hosts import HostPolicy
from doozer.limits import Limits
from doozer.sniff import SniffingFactory, TLSFactory


#: Pending connections the kernel may queue: thousands of watchers
#: reconnecting at once (after a restart) must not wait for SYN retries.
BACKLOG = 1024


def new_node_id() -> str:
    """A fresh id: a restarted process never reuses one (CONSENSUS.md)."""
    return base64.b32encode(os.urandom(10)).decode("ascii")


class NodeService(Service):
    """Runs one doozer node on a reactor.

    :param config: the checked options.
    :param reactor: the reactor to listen and schedule on.
    """

    log = Logger()

    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.node: Optional[Any] = None
        self.ports: list[Any] = []

    def startService(self) -> None:
        super().startService()
        # A full garbage collection in any member stalls the log for all of
        # them; fewer, later collections cut the write p99 at 50 clients
        # about in half (docs/benchmarks.md). A node process owns its heap.
        gc.freeze()
        gc.set_threshold(20000, 20, 100)
        config = self.config
        self.node = node = build_node(config, clock=self.reactor, node_id=new_node_id())
        self.transport = UDPTransport(
            cluster_name=config.cluster,
            cluster_id=None,
            node_id=node.id,
            deliver=node.receive,
            deliver_discovery=node.receive_discovery,
            key=config.cluster_keys or config.cluster_key,
            clock=self.reactor,
        )
        node.trust_outsiders = bool(config.cluster_key) or config.insecure_peers
        self._warn_insecure()
        node._send = self.transport.send
        node.transport_state = self.transport.debug_state
        self.fetcher = SnapshotFetcher(
            node, self._fetch_snapshot, self.transport.address_of, self.reactor
        )
        node.on_running.append(self._joined)
        node.on_chores.append(self._chores)
        node.on_fatal.append(self._fatal)
        host, port = config.listen
        self.ports.append(self.transport.listen(self.reactor, port, host))
        secrets = Secrets(config.rw_secret, config.ro_secret)
        api = API(
            node,
            secrets=secrets,
            max_value=config.max_value,
            cluster_key=config.cluster_key,
            cluster_keys=config.cluster_keys,
            insecure_peers=config.insecure_peers,
        )
        # Both client ports share one set of connection limits and counters.
        self.limits = limits = Limits.from_config(config, self.reactor)
        limits.fit_fd_limit()
        scheme = "https" if config.tls_cert else "http"
        site = Site(
            api.resource(),
            max_body=config.max_value,
            access_log=config.access_log,
            limits=limits,
            hosts=HostPolicy.for_port(config, config.listen, scheme, limits.counters),
            node=node,
        )
        # One port, two protocols: HTTP and doozerd's, chosen by the first byte.
        native = NativeFactory(
            self.node, secrets=secrets, max_value=config.max_value, limits=limits
        )
        self.ports.append(self._listen_tcp(port, SniffingFactory(site, native, limits), host))
        self.log.info(
            "doozer API listening on {scheme}://{addr}/v1/ (and doozerd's protocol)",
            scheme="https" if config.tls_cert else "http",
            addr=format_addr(config.listen),
        )
        if config.web is not None:
            from doozer.webview import WebView

            read_api = API(self.node, secrets=secrets, readonly=True)
            web_site = Site(
                WebView(read_api.resource()).resource(),
                max_body=1024,
                access_log=config.access_log,
                limits=limits,
                hosts=HostPolicy.for_port(config, config.web, "http", limits.counters),
                node=node,
            )
            self.ports.append(
                self.reactor.listenTCP(
                    config.web[1],
                    SniffingFactory(web_site, None, limits),
                    interface=config.web[0],
                    backlog=BACKLOG,
                )
            )
            self.log.info("doozer WebView on http://{addr}/", addr=format_addr(config.web))
        self.discovery = Discovery(
            node, config.peers, self.transport.send_to, self._fetch_snapshot, self.reactor
        )
        self.discovery.start()

    def _joined(self) -> None:
        """The node is in a cluster: datagrams now carry its id."""
        assert self.node is not None
        self.transport.cluster_id = self.node.cluster_id
        self._chores()

    def _chores(self) -> None:
        """Keep peers' addresses current; fetch a snapshot when left behind."""
        node = self.node
        assert node is not None
        for peer_id, addr in node.node_addresses().items():
            try:
                self.transport.set_address(peer_id, parse_addr(addr))
            except ValueError:
                continue
        self.fetcher.chores()

    def _warn_insecure(self) -> None:
        """Say at start and every hour that peers are not authenticated."""
        if not self.config.insecure_peers or self.config.cluster_key:
            return
        self.log.warn(
            "--insecure-peers: peer traffic is neither authenticated nor encrypted; anyone "
            "who can send UDP to {addr} can act as a peer (use --cluster-key-file)",
            addr=format_addr(self.config.listen),
        )
        self._insecure_call = self.reactor.callLater(3600, self._warn_insecure)

    def _fatal(self, why: str) -> None:
        """The node stopped after a bug: end the process (a supervisor
        restarts it, as a new node that copies the cluster's state)."""
        self.log.critical("stopping the process: {why}", why=why)
        if self.reactor.running:
            self.reactor.stop()

    def _fetch_snapshot(self, addr: tuple[str, int]) -> "defer.Deferred[Any]":
        """GET a peer's snapshot over its client port (HTTPS when we use TLS)."""
        import treq

        config = self.config
        scheme = "https" if config.tls_cert else "http"
        if config.tls_cert:
            from treq.client import HTTPClient

            client = HTTPClient(https_agent(self.reactor))
        else:
            client = treq
        url = f"{scheme}://{format_addr(addr)}/_peer/snapshot"
        # A peer token bound to this request, never a client secret.
        headers, nonce = peer_headers(config.cluster_key, b"GET", b"/_peer/snapshot")
        d = client.get(url, headers=headers, timeout=30)

        def got(response: Any) -> Any:
            if response.code != 200:
                raise RuntimeError(f"{url} answered {response.code}")
            mac = (response.headers.getRawHeaders(b"x-doozer-snapshot-mac") or [b""])[0]
            return treq.content(response).addCallback(check, mac.decode("ascii", "replace"))

        def check(body: bytes, mac: str) -> Snapshot:
            if nonce is not None and not body_mac_ok(config.cluster_keys, nonce, body, mac):
                raise RuntimeError("the snapshot's tag does not match the cluster key")
            return Snapshot.decode(body)

        return d.addCallback(got)

    def _listen_tcp(self, port: int, factory: Any, host: str) -> Any:
        if self.config.tls_cert:
            from twisted.internet import ssl

            with open(self.config.tls_cert, "rb") as f:
                cert_pem = f.read()
            with open(self.config.tls_key, "rb") as f:  # type: ignore[arg-type]
                key_pem = f.read()
            cert = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
            # ALPN: a client offering h2 and http/1.1 (curl, browsers) gets
            # http/1.1; one offering nothing (doozerd's clients) gets TLS alone.
            options = ssl.CertificateOptions(
                privateKey=cert.privateKey.original,
                certificate=cert.original,
                acceptableProtocols=[b"http/1.1"],
            )
            # listenSSL, but a refused connection is closed before its handshake.
            tls = TLSFactory(options, False, factory, clock=self.reactor)
            return self.reactor.listenTCP(port, tls, interface=host, backlog=BACKLOG)
        return self.reactor.listenTCP(port, factory, interface=host, backlog=BACKLOG)

    def stopService(self) -> "defer.Deferred[Any]":
        super().stopService()
        if getattr(self, "discovery", None) is not None:
            self.discovery.stop()
        call = getattr(self, "_insecure_call", None)
        if call is not None and call.active():
            call.cancel()
        if self.node is not None:
            self.node.stop()
        ports, self.ports = self.ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
