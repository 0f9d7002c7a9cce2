"""Fetching from peers over HTTP(S): a snapshot, with a one-time token.

Peers present the cluster's own certificate, often self-signed, so it is
not checked against public CAs; the cluster key authenticates the request
(a one-time token) and the answer (a tag over the token's nonce and the
whole body) instead (SPEC §12).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from twisted.internet import defer
from zope.interface import implementer

from doozer.addr import Addr, format_addr
from doozer.node.snapshot import Snapshot
from doozer.server.auth import PEER_SNAPSHOT, body_mac_ok, peer_headers


class SnapshotClient:
    """Fetches snapshots from peers for one node (what
    :class:`doozer.node.fetcher.SnapshotFetcher` and discovery call).

    :param reactor: the reactor (its clock dates the tokens).
    :param cluster_keys: the cluster's keys, the sealing one first (none:
        no credential is sent, and answers are taken as they come).
    :param tls: whether peers serve HTTPS (this node does).
    """

    def __init__(self, reactor: Any, cluster_keys: Sequence[bytes], tls: bool) -> None:
        self.reactor = reactor
        self.keys = list(cluster_keys)
        self.tls = tls

    def __call__(self, addr: Addr) -> "defer.Deferred[Snapshot]":
        """GET the snapshot of the peer at ``addr``."""
        import treq
        from twisted.web.client import Agent
        from twisted.web.http_headers import Headers

        # The Agent itself, not treq's request(): treq runs the URL through
        # hyperlink's IDNA encoding, which refuses an IPv6 host ([::1]).
        agent = https_agent(self.reactor) if self.tls else Agent(self.reactor)
        url = f"{'https' if self.tls else 'http'}://{format_addr(addr)}{PEER_SNAPSHOT.decode()}"
        key: Optional[bytes] = self.keys[0] if self.keys else None
        # A peer token bound to this request, never a client secret.
        headers, nonce = peer_headers(key, b"GET", PEER_SNAPSHOT, self.reactor.seconds())
        d = agent.request(b"GET", url.encode("ascii"), Headers(headers))
        d.addTimeout(30, self.reactor)

        def got(response: Any) -> Any:
            if response.code != 200:
                raise RuntimeError(f"{url} answered {response.code}")
            mac = (response.headers.getRawHeaders(b"x-doozer-snapshot-mac") or [b""])[0]
            return treq.content(response).addCallback(check, mac.decode("ascii", "replace"))

        def check(body: bytes, mac: str) -> Snapshot:
            if nonce is not None and not body_mac_ok(self.keys, nonce, body, mac):
                raise RuntimeError("the snapshot's tag does not match the cluster key")
            return Snapshot.decode(body)

        return d.addCallback(got)


def https_agent(reactor: Any) -> Any:
    """An Agent for peers' TLS ports: peers present the cluster's own
    certificate, often self-signed, so it is not checked against public CAs;
    a cluster key authenticates the snapshot body instead."""
    from twisted.web.client import Agent

    return Agent(reactor, contextFactory=peer_tls_policy())


def peer_tls_policy() -> Any:
    """The ``IPolicyForHTTPS`` of :func:`https_agent` (no certificate checks)."""
    from twisted.internet import ssl
    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
    from twisted.web.iweb import IPolicyForHTTPS

    @implementer(IPolicyForHTTPS)
    class _PeerPolicy:
        def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
            options = ssl.CertificateOptions(verify=False)
            if IOpenSSLClientConnectionCreator.providedBy(options):
                return options  # newer Twisted: the options make the connections
            # Older Twisted: the private ClientTLSOptions(hostname, context).
            from twisted.internet._sslverify import ClientTLSOptions

            # Typed after the installed Twisted, whose ClientTLSOptions
            # takes other arguments (and is not used: see above).
            return ClientTLSOptions(
                hostname.decode("ascii"), options.getContext()  # type: ignore[arg-type]
            )

    return _PeerPolicy()
