"""Who may do what: doozerd's client secrets, and peers' tokens.

- **Secrets** (SPEC §3): a read-write and a read-only secret, sent as
  ``Authorization: Bearer <secret>``, compared in constant time.
- **Peer tokens** (SPEC §12): a peer's HTTP request (a snapshot, the
  consensus view) carries a one-time token made with the cluster key,
  bound to the method, the path, a nonce and a short time window; the
  answer is tagged over that nonce and the whole body. A node never sends a
  client secret to a peer: a forged peer would learn it. Without a key, a
  node with ``--insecure-peers`` answers peers' endpoints to anyone, one
  without answers them to an operator holding the read-write secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from twisted.web.iweb import IRequest

from doozer.errors import DoozerError

if TYPE_CHECKING:  # the site's requests carry the grant; typing only
    from doozer.server.http.site import CappedRequest

#: The peers' endpoints (not part of the public API).
PEER_SNAPSHOT = b"/_peer/snapshot"
#: A node's consensus state as JSON (for diagnosis), behind the same check.
PEER_CONSENSUS = b"/_peer/consensus"
#: How far a token's time may be from the server's (clocks of peers differ
#: a little; a token is also taken only once).
TOKEN_WINDOW = 30.0
#: Tokens remembered to refuse replays (each is refused anyway once older
#: than the window, so this bounds the memory, not the safety, as long as
#: fewer than this many arrive within one window).
MAX_NONCES = 100_000


def bearer(request: IRequest) -> Optional[bytes]:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = request.getHeader(b"authorization") or b""
    return header[7:].strip() if header[:7].lower() == b"bearer " else None


class Secrets:
    """doozerd's read-write and read-only secrets (SPEC §3).

    :param rw: the read-write secret, or ``None`` for an open node.
    :param ro: the read-only secret (only together with ``rw``).
    """

    def __init__(self, rw: Optional[bytes] = None, ro: Optional[bytes] = None) -> None:
        if ro is not None and rw is None:
            raise ValueError(
                "a read-only secret needs a read-write secret too "
                "(set DOOZER_RWSECRET or --rw-secret-file)"
            )
        self.rw = rw
        self.ro = ro

    def grant(self, token: Optional[bytes]) -> Optional[str]:
        """``"rw"``, ``"ro"`` or ``None`` for a presented secret (constant time)."""
        if self.rw is None:
            return "rw"
        if token is None:
            return None
        rw_ok = hmac.compare_digest(token, self.rw)
        ro_ok = self.ro is not None and hmac.compare_digest(token, self.ro)
        return "rw" if rw_ok else "ro" if ro_ok else None

    def check_read(self, request: "CappedRequest") -> None:
        """Refuse a request without a valid secret (401)."""
        if self.rw is None:
            return  # an open node: every request may read and write
        access = self.grant(bearer(request))
        if access is None:
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="doozer"')
            raise DoozerError(
                "UNAUTHORIZED",
                "this node needs a secret: send 'Authorization: Bearer <secret>'",
            )
        request.doozer_access = access

    def check_write(self, request: IRequest) -> None:
        """Refuse a write made with the read-only secret (403)."""
        if getattr(request, "doozer_access", "rw") != "rw":
            raise DoozerError(
                "FORBIDDEN", "the read-only secret cannot write; use the read-write secret"
            )


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _signed(method: bytes, path: bytes, nonce: str, stamp: str) -> bytes:
    return b"doozer-peer-request\x00" + b"\x00".join((method, path, nonce.encode(), stamp.encode()))


def make_token(key: bytes, method: bytes, path: bytes, now: float,
               nonce: Optional[str] = None) -> str:
    """A one-time token for ``method path``, made with the cluster key.

    ``STAMP.NONCE.MAC``: the server takes it within :data:`TOKEN_WINDOW`
    seconds of ``STAMP``, once."""
    stamp = str(int(now))
    nonce = nonce or os.urandom(16).hex()
    return f"{stamp}.{nonce}.{_mac(key, _signed(method, path, nonce, stamp))}"


class TokenCheck:
    """The server's side of peer tokens: checks and remembers them.

    :param keys: the cluster keys (any of them may have made a token).
    :param now: the time (the reactor's, which is wall time: tokens cross hosts).
    """

    def __init__(self, keys: Sequence[bytes], now: Callable[[], float]) -> None:
        self.keys = list(keys)
        self._now = now
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
        if hmac.compare_digest(bearer(request) or b"", rw_secret):
            return None
        raise DoozerError(
            "UNAUTHORIZED", "this endpoint is for peers holding the cluster key, or the read-write secret"
        )
    if tokens is not None:
        raise DoozerError("UNAUTHORIZED", "this endpoint is for peers holding the cluster key")
    return None


def peer_headers(cluster_key: Optional[bytes], method: bytes, path: bytes, now: float
                 ) -> tuple[dict[bytes, list[bytes]], Optional[str]]:
    """Headers that let this node fetch from a peer, and the token's nonce
    (None without a key: then it sends no credential at all)."""
    if cluster_key is None:
        return {}, None
    token = make_token(cluster_key, method, path, now)
    return {b"X-Doozer-Peer": [token.encode()]}, token.split(".")[1]
