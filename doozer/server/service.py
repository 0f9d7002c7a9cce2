"""The twistd service of one node: builds it and opens its ports."""

from __future__ import annotations

import base64
import gc
import os
import socket
import sys
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from doozer.server.http.api import API
from doozer.node.discovery import Discovery
from doozer.server.config import Config
from doozer.addr import format_addr, is_ipv6
from doozer.consensus.transport import UDPTransport
from doozer.consensus.diagnostics import transport_state
from doozer.node.fetcher import SnapshotFetcher
from doozer.node.names import NameBook, follow_addresses, thread_resolver
from doozer.server import faults
from doozer.server.auth import Secrets
from doozer.server.http.peerhttp import SnapshotClient
from doozer.server.http.site import Site
from doozer.server.http.txn import BODY_SLACK as TXN_BODY_SLACK
from doozer.server.doozerd.protocol import NativeFactory
from doozer.node import Node, build_node
from doozer.node.datadir import DataDir
from doozer.node.metrics import NodeMetrics
from doozer.storage.errors import StorageError
from doozer.server.hosts import HostPolicy
from doozer.server.limits import Limits
from doozer.server.sniff import SniffingFactory, TLSFactory


#: Pending connections the kernel may queue: thousands of watchers
#: reconnecting at once (after a restart) must not wait for SYN retries.
BACKLOG = 1024


def open_data_dir(config: Config) -> Optional[DataDir]:
    """The node's data dir, read (and its incarnation bumped) before the
    reactor runs; None without --data-dir.

    A dir that cannot be used ends the process with one line on stderr and
    in the log: what is wrong and what to do (SPEC §8).
    """
    if config.data_dir is None:
        return None
    data = DataDir(config.data_dir, config.cluster, fsync=config.fsync)
    try:
        data.open()
    except (StorageError, OSError) as e:
        line = f"doozer: cannot start from --data-dir {config.data_dir}: {e}"
        Logger().critical("{line}", line=line)
        sys.stderr.write(line + "\n")
        raise SystemExit(1) from None
    return data


def _exit_failed() -> None:
    """End the process with status 1 once the reactor has shut down."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(1)


def new_node_id() -> str:
    """A fresh id: a restarted process never reuses one (CONSENSUS.md)."""
    return base64.b32encode(os.urandom(10)).decode("ascii")


class NodeService(Service):
    """Runs one doozer node on a reactor.

    :param config: the checked options.
    :param reactor: the reactor to listen and schedule on.
    """

    log = Logger()

    def __init__(self, config: Config, reactor: Any, data: Optional[DataDir] = None) -> None:
        self.config = config
        self.reactor = reactor
        #: the data dir, opened (tap.makeService opens it before the reactor runs)
        self.data = data if data is not None else open_data_dir(config)
        self.node: Optional[Node] = None
        self.ports: list[IListeningPort] = []

    def startService(self) -> None:
        super().startService()
        # A full garbage collection in any member stalls the log for all of
        # them; fewer, later collections cut the write p99 at 50 clients
        # about in half (docs/benchmarks.md). A node process owns its heap.
        gc.freeze()
        gc.set_threshold(20000, 20, 100)
        config = self.config
        data = self.data
        if data is not None:
            data.start(self.reactor)
            node_id = data.identity.node_id if data.identity is not None else new_node_id()
        else:
            node_id = new_node_id()
        self.node = node = build_node(config, clock=self.reactor, node_id=node_id, data=data)
        if data is None:
            self.log.info(
                "no --data-dir: node {id} keeps everything in memory, as doozerd; if every "
                "member stops at once, the store is gone",
                id=node_id,
            )
        elif data.restarting:
            self.log.info(
                "data dir {dir}: node {id} of cluster {cluster!r}, incarnation {inc}",
                dir=data.directory, id=node_id, cluster=config.cluster, inc=data.incarnation,
            )
        else:
            self.log.info(
                "data dir {dir} is new: node {id} keeps its state there once in a cluster{nosync}",
                dir=data.directory, id=node_id,
                nosync=" (--unsafe-no-fsync: NOT durable, tests only)" if not config.fsync else "",
            )
        self.transport = UDPTransport(
            cluster_name=config.cluster,
            cluster_id=None,
            node_id=node.id,
            deliver=node.peers.receive,
            deliver_discovery=node.peers.receive_discovery,
            key=config.cluster_keys or config.cluster_key,
            clock=self.reactor,
        )
        node.peers.trust_outsiders = bool(config.cluster_key) or config.insecure_peers
        self._warn_insecure()
        # TEST-ONLY fault hook (docs/testing.md): a no-op unless the
        # environment variable DOOZER_TEST_FAULTS is set.
        self.transport.fault_file = faults.install(self.transport, self.reactor)
        node._send = self.transport.send
        bind = config.bind
        # Peers named by host names: looked up again when they fall silent.
        self.names = NameBook(
            self.reactor,
            thread_resolver(self.reactor, socket.AF_INET6 if is_ipv6(bind[0]) else socket.AF_INET),
            known=config.resolved,
        )
        self.names.on_change.append(lambda name, old, new: self._update_addresses())
        node.transport_state = lambda: transport_state(self.transport)
        fetch = SnapshotClient(self.reactor, config.cluster_keys, tls=bool(config.tls_cert))
        self.fetcher = SnapshotFetcher(node, fetch, self.transport.address_of, self.reactor)
        node.on_running.append(self._joined)
        node.on_chores.append(self._chores)
        node.on_fatal.append(self._fatal)
        host, port = bind
        # Peer traffic stays open during the hand-off at stop; the TCP ports do not.
        self.udp_port = self.transport.listen(self.reactor, port, host)
        self.ports.append(self.udp_port)
        secrets = Secrets(config.rw_secret, config.ro_secret)
        api = API(
            node,
            secrets=secrets,
            cluster_key=config.cluster_key,
            cluster_keys=config.cluster_keys,
            insecure_peers=config.insecure_peers,
        )
        # Both client ports share one set of connection limits and counters.
        self.limits = limits = Limits.from_config(config, self.reactor)
        limits.fit_fd_limit()
        # /metrics: this node's own registry, with what only the service holds
        transport = self.transport
        self.metrics = api.metrics = NodeMetrics(node, lambda: transport.stats, limits)
        scheme = "https" if config.tls_cert else "http"
        site = Site(
            api.resource(),
            # a transaction's body may be larger than one value (SPEC §10)
            max_body=config.max_value + TXN_BODY_SLACK,
            access_log=config.access_log,
            limits=limits,
            hosts=HostPolicy.for_port(config, config.listen, scheme, limits.counters),
            node=node,
        )
        # One port, two protocols: HTTP and doozerd's, chosen by the first byte.
        native = NativeFactory(self.node, secrets=secrets, limits=limits)
        self.ports.append(self._listen_tcp(port, SniffingFactory(site, native, limits), host))
        self.log.info(
            "doozer API listening on {scheme}://{addr}/v1/ (and doozerd's protocol)",
            scheme="https" if config.tls_cert else "http",
            addr=format_addr(config.listen),
        )
        if config.web is not None:
            from doozer.server.http.webview import WebView

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
                    interface=config.ip_of(config.web)[0],
                    backlog=BACKLOG,
                )
            )
            self.log.info("doozer WebView on http://{addr}/", addr=format_addr(config.web))
        self.discovery = Discovery(
            node, config.peers, self.transport.send_to, fetch, self.reactor, self.names
        )
        if node.storage is not None and node.storage.data.restarting:
            # A data dir with state never starts or looks for a cluster: it
            # rejoins its own under its id (discovery still answers Hellos).
            node.storage.resume()
        else:
            self.discovery.start()

    def _joined(self) -> None:
        """The node is in a cluster: datagrams now carry its id."""
        assert self.node is not None
        self.transport.cluster_id = self.node.cluster_id
        self._chores()

    def _chores(self) -> None:
        """Keep peers' addresses current; fetch a snapshot when left behind."""
        self._update_addresses(watch=True)
        self.fetcher.chores()

    def _update_addresses(self, watch: bool = False) -> None:
        """Where each node of ``/ctl/node`` is sent to (SPEC §5: a named
        peer that stops answering has its name looked up again)."""
        node = self.node
        if node is None:
            return
        follow_addresses(self.names, self.transport, node.info.node_addresses(), node.id, watch)

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
        if why.startswith("storage failed"):
            # Exit with status 1, so that a supervisor sees a failure (and,
            # once space is freed, a restart picks up from the data dir).
            # twistd itself has no exit status of its own to give.
            self.reactor.addSystemEventTrigger("after", "shutdown", _exit_failed)
        if self.reactor.running:
            self.reactor.stop()

    def _listen_tcp(self, port: int, factory: SniffingFactory, host: str) -> IListeningPort:
        if self.config.tls_cert:
            from twisted.internet import ssl

            with open(self.config.tls_cert, "rb") as f:
                cert_pem = f.read()
            key_file = self.config.tls_key
            assert key_file is not None  # the options give both or neither
            with open(key_file, "rb") as f:
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

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        """Hand off (SPEC §11, SIGTERM: :meth:`Leaving.hand_off
        <doozer.node.leaving.Leaving.hand_off>`), then stop.

        The client ports close first, so new connections go elsewhere;
        requests on open ones still come in, and their writes are refused
        (``READONLY``, which clients fail over) while the writes in flight
        are answered. Peer traffic goes on until the node has handed off."""
        super().stopService()
        node = self.node
        if node is not None and node.running and node.failed is None:
            udp = getattr(self, "udp_port", None)
            tcp = [p for p in self.ports if p is not udp]
            self.ports = [p for p in self.ports if p is udp]
            yield defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in tcp])
            self.log.info("stopping: handing off before the process exits")
            yield node.leaving.hand_off()
        yield self._stop()

    def _stop(self) -> "defer.Deferred[Any]":
        if getattr(self, "discovery", None) is not None:
            self.discovery.stop()
        call = getattr(self, "_insecure_call", None)
        if call is not None and call.active():
            call.cancel()
        if self.node is not None:
            self.node.stop()
        ports, self.ports = self.ports, []
        stopping: list[defer.Deferred[Any]] = [defer.maybeDeferred(p.stopListening) for p in ports]
        if self.data is not None:
            stopping.append(self.data.stop())
        return defer.gatherResults(stopping)
