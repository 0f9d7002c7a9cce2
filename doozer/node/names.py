"""Host names of peers (SPEC §5): resolved at start-up, and again whenever
their peer stops answering.

UDP is sent to IP addresses, so a peer named by a host name (in ``--peers``,
or in a member's ``/ctl/node/<id>/addr`` when its ``--listen`` is a name) is
looked up here. :func:`resolve_host` is the blocking look-up the options use
at start-up (a name that does not resolve stops the node there, with one
line saying so). Once running, a :class:`NameBook` answers from what it
resolved last and looks a name up again, off the reactor thread, when its
peer has been silent for :data:`STALE` seconds: a peer that came back at a
new address (a rescheduled container, a changed DNS record) is found again.
Look-ups are bounded: one at a time per name, at most one per name every
:data:`MIN_INTERVAL` seconds, at most ``max_names`` names.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer.addr import Addr, is_ip, parse_addr

if TYPE_CHECKING:  # what follow_addresses updates; typing only
    from doozer.consensus.transport import UDPTransport

#: Seconds without a datagram from a named peer before its name is looked up again.
STALE = 3.0
#: Seconds between two look-ups of one name, however silent its peer.
MIN_INTERVAL = 5.0
#: Seconds between two log lines about one name that fails to resolve.
FAILURE_LOG_INTERVAL = 60.0

FAMILY_NAMES: dict[int, str] = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


def resolve_host(host: str, family: int = 0) -> str:
    """The IP address of ``host`` (blocking: at start-up, or in a thread).

    :param family: ``socket.AF_INET`` or ``AF_INET6`` for an address of that
        family only; 0 for the IPv4 address if the name has one, else its IPv6 one.
    :raises ValueError: saying that and why the name does not resolve.
    """
    if is_ip(host):
        return host
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as e:
        why = getattr(e, "strerror", None) or str(e)
        kind = f" to an {FAMILY_NAMES[family]} address" if family in FAMILY_NAMES else ""
        raise ValueError(f"host name {host!r} does not resolve{kind}: {why}") from None
    ips = [(info[0], str(info[4][0])) for info in infos if info[0] in FAMILY_NAMES]
    ips.sort(key=lambda fi: 0 if fi[0] == socket.AF_INET else 1)  # stable: resolver order within
    if not ips:
        raise ValueError(f"host name {host!r} has no IP address")
    return ips[0][1]


def thread_resolver(reactor: Any, family: int) -> Callable[[str], "defer.Deferred[str]"]:
    """:func:`resolve_host` in the reactor's thread pool (``getaddrinfo`` blocks)."""
    from twisted.internet import threads

    def resolve(host: str) -> "defer.Deferred[str]":
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), resolve_host, host, family)

    return resolve


class NameBook:
    """What each peer's host name resolves to, kept current.

    :param clock: dates look-ups and silences.
    :param resolve: ``resolve(name) -> Deferred[ip]`` (None: names never
        resolve; only IP addresses are answered).
    :param known: names resolved already (at start-up), name -> IP.
    :param stale: seconds of silence after which a name is looked up again.
    :param min_interval: seconds between two look-ups of one name.
    :param max_names: names kept (more are not looked up, and said so).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        resolve: Optional[Callable[[str], "defer.Deferred[str]"]],
        known: Optional[dict[str, str]] = None,
        *,
        stale: float = STALE,
        min_interval: float = MIN_INTERVAL,
        max_names: int = 256,
    ) -> None:
        self.clock = clock
        self.resolve = resolve
        self.stale = stale
        self.min_interval = min_interval
        self.max_names = max_names
        self.ips: dict[str, str] = {k: v for k, v in (known or {}).items() if not is_ip(k)}
        #: called with (name, old IP, new IP) when a name resolves somewhere new
        self.on_change: list[Callable[[str, Optional[str], str], None]] = []
        self.stats = {"lookups": 0, "changed": 0, "failed": 0, "refused": 0}
        self._asked_at: dict[str, float] = {}
        self._busy: set[str] = set()
        self._failure_logged_at: dict[str, float] = {}
        #: per watched peer: (datagrams heard from it, since when that count)
        self._heard: dict[str, tuple[int, float]] = {}

    def lookup(self, addr: Addr) -> Optional[Addr]:
        """The IP address to send to for ``addr``: itself when its host is
        an IP address, else what the name resolved to last (None while it
        never has: a look-up starts)."""
        host, port = addr[0], addr[1]
        if is_ip(host):
            return (host, port)
        ip = self.ips.get(host)
        if ip is None:
            self._ask(host)
            return None
        return (ip, port)

    def silent(self, addr: Addr) -> None:
        """The peer at ``addr`` stopped answering: look its name up again
        (unless it was looked up within ``min_interval``)."""
        if not is_ip(addr[0]):
            self._ask(addr[0])

    def watch(self, key: str, addr: Addr, heard: int) -> None:
        """Called every so often with how many datagrams peer ``key`` (at
        the named ``addr``) has sent so far: once that count has not moved
        for ``stale`` seconds, the peer is :meth:`silent`."""
        if is_ip(addr[0]):
            return
        now = self.clock.seconds()
        last = self._heard.get(key)
        if last is None or last[0] != heard:
            self._heard[key] = (heard, now)
            if len(self._heard) > self.max_names:
                self._heard.pop(next(iter(self._heard)))
        elif now - last[1] >= self.stale:
            self.silent(addr)

    def _ask(self, host: str) -> None:
        if self.resolve is None or host in self._busy:
            return
        now = self.clock.seconds()
        if now - self._asked_at.get(host, float("-inf")) < self.min_interval:
            return
        if host not in self.ips and len(self.ips) + len(self._busy) >= self.max_names:
            self.stats["refused"] += 1
            return
        self._asked_at[host] = now
        if len(self._asked_at) > 4 * self.max_names:
            self._asked_at.pop(next(iter(self._asked_at)))
        self._busy.add(host)
        self.stats["lookups"] += 1
        d = defer.maybeDeferred(self.resolve, host)
        d.addCallbacks(self._resolved, self._failed, callbackArgs=(host,), errbackArgs=(host,))

    def _resolved(self, ip: str, host: str) -> None:
        self._busy.discard(host)
        old = self.ips.get(host)
        self.ips[host] = ip
        if old == ip:
            return
        self.stats["changed"] += 1
        self.log.info(
            "peer host name {name} now resolves to {ip}{was}",
            name=host, ip=ip, was=f" (was {old})" if old else "",
        )
        for callback in list(self.on_change):
            callback(host, old, ip)

    def _failed(self, failure: Failure, host: str) -> None:
        self._busy.discard(host)
        self.stats["failed"] += 1
        now = self.clock.seconds()
        if now - self._failure_logged_at.get(host, float("-inf")) < FAILURE_LOG_INTERVAL:
            return
        self._failure_logged_at[host] = now
        if len(self._failure_logged_at) > self.max_names:
            self._failure_logged_at.pop(next(iter(self._failure_logged_at)))
        kept = self.ips.get(host)
        self.log.warn(
            "cannot look up peer host name {name} again: {why}; {kept}",
            name=host,
            why=failure.getErrorMessage(),
            kept=f"still sending to {kept}" if kept else "no address for it yet",
        )


def follow_addresses(
    names: NameBook,
    transport: "UDPTransport",
    addresses: dict[str, str],
    own_id: str,
    watch: bool = True,
) -> None:
    """Point the transport at every node of ``/ctl/node``: its address, or
    what its host name resolves to.

    With ``watch``, a named peer is looked up again when it has been silent
    for a while, or when its datagrams come from elsewhere than its name
    resolved to (it moved; a look-up then tells where to send).

    :param addresses: node id -> ``HOST:PORT`` text (``/ctl/node/<id>/addr``).
    """
    for peer_id, text in addresses.items():
        try:
            addr = parse_addr(text)
        except ValueError:
            continue
        mine = peer_id == own_id
        if watch and not mine:
            names.watch(peer_id, addr, transport.taken_from(peer_id))
        ip = names.lookup(addr)
        if ip is None:
            continue
        source = transport.source_of(peer_id)
        if watch and not mine and source is not None and source != ip:
            names.silent(addr)  # answered at once by a fake resolver
            ip = names.lookup(addr) or ip
        transport.set_address(peer_id, ip)
