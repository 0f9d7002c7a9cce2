"""Node snapshots: what a joining or lagging node copies from a peer.

A snapshot is the store at some rev **plus the seqn whose application
produced exactly that store**, ``M(s)`` for the α instances after it, the
cluster's id and α (CONSENSUS.md, "Liveness and membership"). It travels
over HTTP on the peer's client port (it can be large; UDP is for small
messages) at ``/_peer/snapshot``, which is not part of the public API.

Who may fetch one (SPEC §12):

- with a cluster key, a peer: its request carries a token bound to the
  method, the path, a fresh nonce and a short time window, made with the
  key; a token is taken once (replays are refused), and the answer's tag
  binds that nonce and the whole body (cluster id included);
- without a key, a node started with ``--insecure-peers`` answers anyone
  (its operator said the network is trusted); otherwise only an operator
  holding the read-write secret.

A node never sends a client secret to a peer: a forged peer would learn it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import msgpack
from zope.interface import implementer

from doozer.errors import DoozerError

PATH = b"/_peer/snapshot"
#: A node's consensus state as JSON (for diagnosis), behind the same check.
CONSENSUS_PATH = b"/_peer/consensus"
#: How far a token's time may be from the server's (clocks of peers differ
#: a little; a token is also taken only once).
TOKEN_WINDOW = 30.0
#: Tokens remembered to refuse replays (each is refused anyway once older
#: than the window, so this bounds the memory, not the safety, as long as
#: fewer than this many arrive within one window).
MAX_NONCES = 100_000


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


def _signed(method: bytes, path: bytes, nonce: str, stamp: str) -> bytes:
    return b"doozer-peer-request\x00" + b"\x00".join((method, path, nonce.encode(), stamp.encode()))


def make_token(key: bytes, method: bytes, path: bytes, now: Optional[float] = None,
               nonce: Optional[str] = None) -> str:
    """A one-time token for ``method path``, made with the cluster key.

    ``STAMP.NONCE.MAC``: the server takes it within :data:`TOKEN_WINDOW`
    seconds of ``STAMP``, once."""
    stamp = str(int(time.time() if now is None else now))
    nonce = nonce or os.urandom(16).hex()
    return f"{stamp}.{nonce}.{_mac(key, _signed(method, path, nonce, stamp))}"


class TokenCheck:
    """The server's side of peer tokens: checks and remembers them.

    :param keys: the cluster keys (any of them may have made a token).
    :param clock: ``seconds()`` (default: wall time: tokens cross hosts).
    """

    def __init__(self, keys: Sequence[bytes], now: Optional[Callable[[], float]] = None) -> None:
        self.keys = list(keys)
        self._now = now or time.time
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> stamp

    def take(self, token: str, method: bytes, path: bytes) -> Optional[str]:
        """The nonce of ``token`` if it is valid for ``method path`` and was
        never taken before, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        stamp, nonce, mac = parts
        if not stamp.isdigit() or not 16 <= len(nonce) <= 64:
            return None
        now = self._now()
        if abs(now - int(stamp)) > TOKEN_WINDOW:
            return None
        signed = _signed(method, path, nonce, stamp)
        if not any(hmac.compare_digest(mac, _mac(k, signed)) for k in self.keys):
            return None
        seen = self._seen
        while seen and (len(seen) >= MAX_NONCES or next(iter(seen.values())) < now - 2 * TOKEN_WINDOW):
            seen.popitem(last=False)
        if nonce in seen:
            return None  # a replay
        seen[nonce] = now
        return nonce


def body_mac(key: bytes, nonce: str, body: bytes) -> str:
    """The tag of a snapshot answer: the request's nonce and the whole body."""
    return _mac(key, b"doozer-peer-answer\x00" + nonce.encode() + b"\x00" + body)


def body_mac_ok(keys: Sequence[bytes], nonce: str, body: bytes, tag: str) -> bool:
    """Whether ``tag`` is :func:`body_mac` of ``body`` for ``nonce`` under one of ``keys``."""
    return any(hmac.compare_digest(tag, body_mac(k, nonce, body)) for k in keys)


def check_peer(request: Any, tokens: Optional[TokenCheck], rw_secret: Optional[bytes],
               insecure: bool = False) -> Optional[str]:
    """Refuse a request to a ``/_peer/`` endpoint that is not from a peer
    (401); return the token's nonce when a peer token was taken.

    With a cluster key (``tokens``) a peer token, or the read-write secret
    of an operator. Without one: anyone with ``insecure``, else the
    read-write secret when one is configured (an open node's operator
    reads everything anyway).
    """
    if tokens is not None:
        token = (request.getHeader(b"x-doozer-peer") or b"").decode("ascii", "replace")
        if token:
            nonce = tokens.take(token, request.method, request.path)
            if nonce is not None:
                return nonce
            raise DoozerError("UNAUTHORIZED", "the peer token is invalid, stale or replayed")
    elif insecure:
        return None
    if rw_secret is not None:
        header = request.getHeader(b"authorization") or b""
        secret = header[7:].strip() if header[:7].lower() == b"bearer " else b""
        if hmac.compare_digest(secret, rw_secret):
            return None
        raise DoozerError(
            "UNAUTHORIZED", "this endpoint is for peers holding the cluster key, or the read-write secret"
        )
    if tokens is not None:
        raise DoozerError("UNAUTHORIZED", "this endpoint is for peers holding the cluster key")
    return None


def peer_headers(cluster_key: Optional[bytes], method: bytes, path: bytes
                 ) -> tuple[dict[bytes, list[bytes]], Optional[str]]:
    """Headers that let this node fetch from a peer, and the token's nonce
    (None without a key: then it sends no credential at all)."""
    if cluster_key is None:
        return {}, None
    token = make_token(cluster_key, method, path)
    return {b"X-Doozer-Peer": [token.encode()]}, token.split(".")[1]


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
