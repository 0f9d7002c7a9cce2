"""Which ``Host`` and ``Origin`` a client port answers (SPEC §12 "Browsers").

A browser tricked by DNS rebinding sends the attacker's name in ``Host``;
a page on another site that posts a form sends its own ``Origin``. So each
HTTP port (the API, the WebView) answers only:

- requests whose ``Host`` is the port's own address, ``localhost``,
  ``127.0.0.1`` or ``[::1]`` with the port's port, or a name given with
  ``--allowed-hosts`` (``name`` with any port, ``name:port`` with that one,
  ``*`` for any Host at all); anything else is ``421 MISDIRECTED``. An
  HTTP/1.0 request without ``Host`` is served (a browser always sends one,
  so it cannot be a rebinding; old tools and health checks don't); an
  HTTP/1.1 request must carry exactly one.
- requests without ``Origin`` or whose ``Origin`` names an allowed host
  (same origin); a request from another origin is ``403 FORBIDDEN``.
  ``--cors-origin`` lets named origins (or ``*``) **read** cross-origin:
  ``GET``/``HEAD`` without ``consistent=1`` (which costs a consensus round
  and a rev), answered with ``Access-Control-Allow-Origin``; their preflight
  ``OPTIONS`` is answered ``204`` allowing ``GET, HEAD`` with the
  ``Authorization`` header. Nothing that changes state or consumes a rev is
  served cross-origin, whatever the options.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

from twisted.web.iweb import IRequest

from doozer.errors import DoozerError

if TYPE_CHECKING:  # the site's requests ask the policy; typing only
    from twisted.web.server import Request

    from doozer.server.http.site import CappedRequest

#: Host names every port answers to (with its own port).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443}
READ_METHODS = (b"GET", b"HEAD")
#: Reason phrases Twisted does not know.
_REASONS = {421: b"Misdirected Request"}
#: What :meth:`HostPolicy.check` returns for an allowed CORS preflight.
PREFLIGHT = "preflight"

#: A host name (RFC 1123 labels, ``_`` tolerated, a trailing dot), an IPv4
#: address, or an IPv6 address in brackets; then an optional port.
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?)(:[0-9]{1,5})?")
_ORIGIN = re.compile(r"(https?)://(.+)")


def parse_host(text: str, default_port: int) -> Optional[tuple[str, int]]:
    """``(host, port)`` of a ``Host`` value (brackets off, lower case, no
    trailing dot; ``default_port`` when it names none), or None when it is
    not one."""
    match = _HOST.fullmatch(text.strip().lower())
    if match is None:
        return None
    host, port = match.group(1), match.group(2)
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    host = host.rstrip(".")
    if not port:
        return host, default_port
    number = int(port[1:])
    return (host, number) if 0 < number < 65536 else None


def parse_origin(text: str) -> Optional[tuple[str, str, int]]:
    """``(scheme, host, port)`` of an ``Origin`` value, or None (``null`` too)."""
    match = _ORIGIN.fullmatch(text.strip().lower())
    if match is None:
        return None
    scheme = match.group(1)
    hostport = parse_host(match.group(2), DEFAULT_PORTS[scheme])
    return None if hostport is None else (scheme, *hostport)


def canonical_origin(text: str) -> str:
    """An origin as browsers send it (lower case, default port left out).

    :raises ValueError: when it is not ``http(s)://HOST[:PORT]`` or ``*``.
    """
    if text.strip() == "*":
        return "*"
    parsed = parse_origin(text)
    if parsed is None:
        raise ValueError(f"{text!r} is not an origin like https://app.example.com[:PORT]")
    scheme, host, port = parsed
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + ("" if port == DEFAULT_PORTS[scheme] else f":{port}")


def check_allowed_host(text: str) -> str:
    """An ``--allowed-hosts`` entry, normalised (lower case).

    :raises ValueError: when it is not ``NAME``, ``NAME:PORT`` or ``*``.
    """
    text = text.strip().lower()
    if text != "*" and parse_host(text, 0) is None:
        raise ValueError(f"{text!r} is not a host name, IP address, NAME:PORT or *")
    return text


class HostPolicy:
    """The Host and Origin rules of one HTTP port.

    :param addr: the port's own ``(host, port)``.
    :param also: other addresses of the node that the port answers to with
        its own port (the ``--listen`` host, for the WebView's port).
    :param allowed_hosts: ``--allowed-hosts`` entries (see the module docstring).
    :param cors_origins: ``--cors-origin`` entries, allowed to read cross-origin.
    :param scheme: ``https`` when the port serves TLS (a Host without a port
        then means 443).
    :param counters: where refusals are counted (``misdirected``,
        ``cross_origin_refused``), e.g. :attr:`doozer.server.limits.Limits.counters`.
    """

    def __init__(
        self,
        addr: tuple[str, int],
        *,
        also: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        cors_origins: Iterable[str] = (),
        scheme: str = "http",
        counters: Optional[dict[str, int]] = None,
    ) -> None:
        self.default_port = DEFAULT_PORTS[scheme]
        self.any_host = False
        self.exact = {(h.lower().strip("[]"), addr[1]) for h in (addr[0], *also, *LOOPBACK_NAMES)}
        self.names: set[str] = set()  # allowed with any port
        for entry in allowed_hosts:
            entry = check_allowed_host(entry)
            if entry == "*":
                self.any_host = True
                continue
            host, port = parse_host(entry, -1) or ("", -1)
            if port == -1:
                self.names.add(host)
            else:
                self.exact.add((host, port))
        self.cors = {canonical_origin(o) for o in cors_origins}
        self.counters = counters if counters is not None else {}
        self._host_cache: dict[bytes, bool] = {}

    @classmethod
    def for_port(
        cls, config: Any, addr: tuple[str, int], scheme: str, counters: dict[str, int]
    ) -> "HostPolicy":
        """The rules of the node's port at ``addr`` (its ``--listen`` or ``--web``).

        :param config: the node's :class:`doozer.server.config.Config`.

        A host name in ``--listen`` or ``--web`` is answered to, and so is
        the IP address it resolved to (peers fetch snapshots by address).
        """
        also = [config.listen[0], config.ip_of(config.listen)[0], config.ip_of(addr)[0]]
        return cls(
            addr,
            also=also,
            allowed_hosts=config.allowed_hosts,
            cors_origins=config.cors_origins,
            scheme=scheme,
            counters=counters,
        )

    def host_allowed(self, host: str, port: int) -> bool:
        """Whether ``host:port`` names this port."""
        return self.any_host or host in self.names or (host, port) in self.exact

    def _host_ok(self, value: bytes) -> bool:
        # Every request asks this of one of a handful of values: remember them.
        known = self._host_cache.get(value)
        if known is None:
            parsed = parse_host(value.decode("ascii", "replace"), self.default_port)
            known = self.any_host or (parsed is not None and self.host_allowed(*parsed))
            if len(self._host_cache) < 64:
                self._host_cache[value] = known
        return known

    def check(self, request: Request) -> Union[None, str, DoozerError]:
        """None to serve ``request``, :data:`PREFLIGHT` for an allowed CORS
        preflight, else the error to answer.

        Sets the CORS headers on a cross-origin request it lets through.
        """
        hosts = request.requestHeaders.getRawHeaders(b"host")
        if hosts is None:
            if request.clientproto not in (b"HTTP/1.0", b"HTTP/0.9"):
                return self._misdirected("an HTTP/1.1 request must carry a Host header")
        elif len(hosts) != 1 or not self._host_ok(hosts[0]):
            shown = b", ".join(hosts)[:100].decode("ascii", "replace")
            return self._misdirected(
                f"this node does not answer to Host {shown!r}; use its address, "
                "localhost, or a name given with --allowed-hosts"
            )
        origins = request.requestHeaders.getRawHeaders(b"origin")
        if origins is None:
            return None
        return self._check_origin(request, origins)

    def _check_origin(self, request: IRequest, origins: Sequence[bytes]) -> Union[None, str, DoozerError]:
        text = origins[0].decode("ascii", "replace") if len(origins) == 1 else ""
        parsed = parse_origin(text)
        # Same origin, or one of the names allowed by name: "*" in
        # --allowed-hosts opens the Host check only, never the Origin one.
        if parsed is not None and (parsed[1] in self.names or parsed[1:] in self.exact):
            return None
        if not ("*" in self.cors or (parsed is not None and canonical_origin(text) in self.cors)):
            return self._cross_origin(
                f"requests from origin {text[:100]!r} are refused; --cors-origin "
                "lets an origin read"
            )
        if request.method == b"OPTIONS":
            asked = (request.getHeader(b"access-control-request-method") or b"").upper()
            if asked not in READ_METHODS:
                return self._cross_origin(
                    f"cross-origin {asked.decode('ascii', 'replace')} is refused: "
                    "cross-origin requests may only read"
                )
            _cors_headers(request, text)
            request.setHeader(b"access-control-allow-methods", b"GET, HEAD")
            request.setHeader(b"access-control-allow-headers", b"Authorization, Accept")
            request.setHeader(b"access-control-max-age", b"600")
            return PREFLIGHT
        if request.method not in READ_METHODS or _consumes_rev(request):
            return self._cross_origin(
                "cross-origin requests may only read (GET or HEAD, without "
                "consistent=1): nothing that changes the store or uses a rev"
            )
        _cors_headers(request, text)
        return None

    def refused(self, request: "CappedRequest") -> bool:
        """Answer ``request`` here if it is refused (or a preflight): True when answered."""
        verdict = self.check(request)
        if verdict is None:
            return False
        request.site = request.channel.site
        if isinstance(verdict, DoozerError):
            # Twisted knows no reason phrase for 421.
            request.setResponseCode(verdict.status, _REASONS.get(verdict.status))
            request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
            body = json.dumps(verdict.body(), separators=(",", ":")).encode()
        else:  # an allowed CORS preflight
            request.setResponseCode(204)
            body = b""
        request.setHeader(b"Content-Length", b"%d" % len(body))
        node = getattr(request.site, "node", None)
        if node is not None:
            request.setHeader(b"X-Doozer-Rev", b"%d" % node.store.rev)
        if body:
            request.write(body)
        request.finish()
        return True

    def _misdirected(self, detail: str) -> DoozerError:
        self.counters["misdirected"] = self.counters.get("misdirected", 0) + 1
        return DoozerError("MISDIRECTED", detail)

    def _cross_origin(self, detail: str) -> DoozerError:
        self.counters["cross_origin_refused"] = self.counters.get("cross_origin_refused", 0) + 1
        return DoozerError("FORBIDDEN", detail)


def _cors_headers(request: IRequest, origin: str) -> None:
    request.setHeader(b"access-control-allow-origin", origin.encode("ascii", "replace"))
    request.setHeader(b"vary", b"Origin")
    request.setHeader(b"access-control-expose-headers", b"X-Doozer-Rev, X-Doozer-File-Rev")


def _consumes_rev(request: IRequest) -> bool:
    """``consistent=1`` runs a consensus round: a no-op that takes a rev."""
    values = (request.args or {}).get(b"consistent") or []
    return any(v.lower() not in (b"", b"0", b"false") for v in values)
