"""The twistd service of one node: builds it and opens its ports."""

from __future__ import annotations

import base64
import os
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from doozer.api import API
from doozer.config import Config, format_addr
from doozer.httputil import Secrets, Site
from doozer.native import NativeFactory
from doozer.node import build_node
from doozer.sniff import SniffingFactory


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
        config = self.config
        self.node = build_node(
            config, clock=self.reactor, node_id=new_node_id()
        )
        secrets = Secrets(config.rw_secret, config.ro_secret)
        api = API(self.node, secrets=secrets, max_value=config.max_value)
        site = Site(api.resource(), max_body=config.max_value, access_log=config.access_log)
        # One port, two protocols: HTTP and doozerd's, chosen by the first byte.
        native = NativeFactory(self.node, secrets=secrets, max_value=config.max_value)
        host, port = config.listen
        self.ports.append(self._listen_tcp(port, SniffingFactory(site, native), host))
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
            )
            self.ports.append(
                self.reactor.listenTCP(config.web[1], web_site, interface=config.web[0])
            )
            self.log.info("doozer WebView on http://{addr}/", addr=format_addr(config.web))
        self.node.start_genesis(empty_slots=0)

    def _listen_tcp(self, port: int, factory: Any, host: str) -> Any:
        if self.config.tls_cert:
            from twisted.internet import ssl

            with open(self.config.tls_cert, "rb") as f:
                cert_pem = f.read()
            with open(self.config.tls_key, "rb") as f:  # type: ignore[arg-type]
                key_pem = f.read()
            cert = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
            return self.reactor.listenSSL(port, factory, cert.options(), interface=host)
        return self.reactor.listenTCP(port, factory, interface=host)

    def stopService(self) -> "defer.Deferred[Any]":
        super().stopService()
        if self.node is not None:
            self.node.stop()
        ports, self.ports = self.ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
