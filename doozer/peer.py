"""Node snapshots: what a joining or lagging node copies from a peer.

A snapshot is the store at some rev **plus the seqn whose application
produced exactly that store**, ``M(s)`` for the α instances after it, the
cluster's id and α (CONSENSUS.md, "Liveness and membership"). It travels
over HTTP on the peer's client port (it can be large; UDP is for small
messages) at ``/_peer/snapshot``, which is not part of the public API: with
a cluster key it needs a token made with that key, otherwise the read-write
secret when one is configured — never a read-only secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import msgpack
from zope.interface import implementer

from doozer.errors import DoozerError

PATH = b"/_peer/snapshot"
#: A node's consensus state as JSON (for diagnosis), behind the same check.
CONSENSUS_PATH = b"/_peer/consensus"
_TOKEN_SKEW = 300.0


@dataclass
class Snapshot:
    """A node's state at an instance boundary."""

    cluster: str
    cluster_id: str
    alpha: int
    seqn: int
    members: dict[int, list[str]]
    store: bytes

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "v": 1,
                "cluster": self.cluster,
                "cluster_id": self.cluster_id,
                "alpha": self.alpha,
                "seqn": self.seqn,
                "members": {str(s): list(m) for s, m in self.members.items()},
                "store": self.store,
            },
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> "Snapshot":
        """:raises ValueError: for anything that is not a snapshot."""
        try:
            doc = msgpack.unpackb(data, raw=False)
            return cls(
                cluster=str(doc["cluster"]),
                cluster_id=str(doc["cluster_id"]),
                alpha=int(doc["alpha"]),
                seqn=int(doc["seqn"]),
                members={int(s): [str(i) for i in m] for s, m in doc["members"].items()},
                store=bytes(doc["store"]),
            )
        except Exception as e:
            raise ValueError(f"not a node snapshot: {e}") from None


def snapshot_sources(node: Any, address_of: Callable[[str], Optional[Any]]) -> list[Any]:
    """Where a node left behind the log can copy a snapshot: the other
    members of its CAL, at the address its transport knows for each (from
    their ``/ctl/node`` record, else where their datagrams came from: the
    record of a node may have been deleted while it was away).

    Members heard from lately come first, alone: a stopped (SIGSTOPped)
    member still accepts the connection and keeps the fetch waiting for its
    whole timeout. Only when none was heard lately are the others tried.
    """
    seq = node.sequencer
    now = node.clock.seconds()
    lately, others = [], []
    for member in node.store.cal():
        if member != node.id:
            addr = address_of(member)
            if addr is not None:
                fresh = seq is not None and seq.heard_lately(member, now)
                (lately if fresh else others).append(addr)
    return lately or others


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def make_token(key: bytes, now: Optional[float] = None) -> str:
    """A token proving knowledge of the cluster key, valid a few minutes."""
    stamp = str(int(time.time() if now is None else now))
    return f"{stamp}.{_mac(key, b'doozer-snapshot:' + stamp.encode())}"


def token_ok(key: bytes, token: str, now: Optional[float] = None) -> bool:
    """Whether ``token`` was made with ``key`` recently (constant-time compare)."""
    stamp, _, mac = token.partition(".")
    if not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > _TOKEN_SKEW:
        return False
    return hmac.compare_digest(mac, _mac(key, b"doozer-snapshot:" + stamp.encode()))


def body_mac(key: Optional[bytes], body: bytes) -> str:
    """The integrity tag of a snapshot body (empty without a key)."""
    return _mac(key, body) if key else ""


def check_peer(request: Any, cluster_key: Optional[bytes], rw_secret: Optional[bytes]) -> None:
    """Refuse a snapshot request that is not from a peer (401)."""
    if cluster_key is not None:
        token = (request.getHeader(b"x-doozer-peer") or b"").decode("ascii", "replace")
        if token_ok(cluster_key, token):
            return
        raise DoozerError("UNAUTHORIZED", "snapshots are for peers holding the cluster key")
    if rw_secret is not None:
        header = request.getHeader(b"authorization") or b""
        token = header[7:].strip() if header[:7].lower() == b"bearer " else b""
        if not hmac.compare_digest(token, rw_secret):
            raise DoozerError("UNAUTHORIZED", "snapshots need the read-write secret")


def peer_headers(cluster_key: Optional[bytes], rw_secret: Optional[bytes]) -> dict[bytes, list[bytes]]:
    """Headers that let this node fetch a snapshot from a peer."""
    if cluster_key is not None:
        return {b"X-Doozer-Peer": [make_token(cluster_key).encode()]}
    if rw_secret is not None:
        return {b"Authorization": [b"Bearer " + rw_secret]}
    return {}


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

            return ClientTLSOptions(hostname.decode("ascii"), options.getContext())

    return _PeerPolicy()
