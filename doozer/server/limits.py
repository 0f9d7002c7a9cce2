"""What one node grants its clients: connections, deadlines, unsent output (SPEC §12).

One :class:`Limits` per node, shared by both client ports (the API with
doozerd's protocol, and the WebView):

- **Connections.** :meth:`Limits.admit` hands each new connection a
  :class:`Ticket`, or ``None`` over ``max_conns`` in all or
  ``max_conns_per_ip`` from one address (an IPv6 client: its /64): the port
  then closes the socket at once, and established clients keep being served. The protocol that ends
  up serving the connection releases the ticket when it ends.
- **Deadlines.** A ticket carries the time by which its client must have
  sent something (a whole request head, a whole frame), or ``None``. The
  protocols set it; a sweep every ``request_timeout / 10`` seconds (at most
  1 s) calls ``on_expire`` of every ticket past its deadline. A float per
  connection costs less than a timer per request, and one sweep over 10,000
  connections a second is about a millisecond.
- **Unsent output.** :class:`OutputGauge` turns a transport's producer
  signals into a bound on what is still unsent, so a front end can stop
  reading from a client that does not read its answers.
- **Counters.** Every refusal adds one to :attr:`Limits.counters`, a plain
  dict that ``/metrics`` can read.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

if TYPE_CHECKING:
    from twisted.internet.interfaces import IConsumer, IPushProducer, ITCPTransport

    from doozer.server.config import Config

    class IConnection(ITCPTransport, IConsumer, IPushProducer):
        """What the client ports' protocols use of their transport: a TCP
        connection, or TLS over one, which also takes and drives a
        producer. For the type checker only (Twisted types
        ``Protocol.transport`` as a bare ``ITransport``)."""

#: Defaults of the options (``twistd doozer --help`` shows them).
MAX_CONNS = 10_000
MAX_CONNS_PER_IP = 1_000
REQUEST_TIMEOUT = 10.0
MAX_OUTPUT = 4 * 1024 * 1024
MAX_OUTSTANDING = 1_000

#: A doozerd-protocol client that leaves its answers unread (the node not
#: reading it) for this many request timeouts is cut off; Twisted's own
#: 60 s inactivity timer does the same for HTTP.
STALL_FACTOR = 6

#: File descriptors kept for everything but client connections (listening
#: sockets, the UDP socket, the data dir, peers' snapshot fetches, logs).
FD_RESERVE = 128

#: The refusal counters, all present from the start (at 0).
COUNTERS = (
    "conns_refused_total",  # every connection closed at once over a limit
    "conns_refused_per_ip",  # ... of which over --max-conns-per-ip
    "request_timeouts",  # connections closed for missing their deadline
    "output_paused",  # times a connection stopped being read: unsent output over --max-output
    "output_stalled",  # doozerd connections cut: answers left unread for STALL_FACTOR timeouts
    "outstanding_refused",  # doozerd-protocol requests refused: --max-outstanding in flight
    "misdirected",  # HTTP requests answered 421 (Host)
    "cross_origin_refused",  # HTTP requests answered 403 (Origin)
)


def client_key(host: str) -> str:
    """What ``max_conns_per_ip`` counts a client by: its IPv4 address, or the
    /64 of its IPv6 address (one host commonly holds a whole /64)."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class Ticket:
    """One admitted connection: its address, its deadline, whom to tell.

    :param limits: the :class:`Limits` that admitted it.
    :param ip: the client's address, as counted for ``max_conns_per_ip``.
    """

    __slots__ = ("limits", "ip", "deadline", "on_expire", "released")

    def __init__(self, limits: "Limits", ip: str) -> None:
        self.limits = limits
        self.ip = ip
        #: Clock time by which the client must have sent what it owes, or None.
        self.deadline: Optional[float] = None
        #: Called (once) by the sweep when the deadline has passed.
        self.on_expire: Callable[[], None] = _nothing
        self.released = False

    def expire_in(self, seconds: Optional[float] = None) -> None:
        """Set the deadline ``seconds`` (default: the request timeout) from now."""
        limits = self.limits
        if limits.request_timeout > 0:
            delay = limits.request_timeout if seconds is None else seconds
            self.deadline = limits.clock.seconds() + delay

    def release(self) -> None:
        """The connection ended: give back its place (idempotent)."""
        if not self.released:
            self.released = True
            self.deadline = None
            self.on_expire = _nothing
            self.limits._release(self)


def _nothing() -> None:
    return None


class Limits:
    """The client-facing limits of one node, its open connections and refusal counts.

    :param clock: the reactor's time (a ``Clock`` in tests).
    :param max_conns: connections open at once across the node's client ports.
    :param max_conns_per_ip: ... from one client address.
    :param request_timeout: seconds a client has to send a whole request head
        (HTTP) or frame (doozerd's protocol); ``0`` turns deadlines off.
    :param max_output: bytes of unsent output past which a connection is not
        read until its client reads.
    :param max_outstanding: requests in flight on one doozerd-protocol
        connection; more are refused at once.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        *,
        max_conns: int = MAX_CONNS,
        max_conns_per_ip: int = MAX_CONNS_PER_IP,
        request_timeout: float = REQUEST_TIMEOUT,
        max_output: int = MAX_OUTPUT,
        max_outstanding: int = MAX_OUTSTANDING,
    ) -> None:
        self.clock = clock
        self.max_conns = max_conns
        self.max_conns_per_ip = max_conns_per_ip
        self.request_timeout = request_timeout
        self.max_output = max_output
        self.max_outstanding = max_outstanding
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.open = 0
        self.per_ip: dict[str, int] = {}
        self._tickets: set[Ticket] = set()
        self._sweep: Optional[LoopingCall] = None
        self._last_refusal_log = -1e18

    @classmethod
    def from_config(cls, config: "Config", clock: IReactorTime) -> "Limits":
        """The limits a node's options ask for (:class:`doozer.server.config.Config`)."""
        return cls(
            clock,
            max_conns=config.max_conns,
            max_conns_per_ip=config.max_conns_per_ip,
            request_timeout=config.request_timeout,
            max_output=config.max_output,
            max_outstanding=config.max_outstanding,
        )

    # ------------------------------------------------------------------
    # connections

    def admit(self, addr: Optional[IAddress]) -> Optional[Ticket]:
        """A ticket for a new connection from ``addr``, or None over a limit."""
        ip = client_key(str(getattr(addr, "host", "")))
        if self.open >= self.max_conns:
            self._refuse(ip, f"{self.open} connections are open (--max-conns {self.max_conns})")
            return None
        count = self.per_ip.get(ip, 0)
        if count >= self.max_conns_per_ip:
            self.counters["conns_refused_per_ip"] += 1
            self._refuse(
                ip, f"{count} connections from {ip} are open "
                f"(--max-conns-per-ip {self.max_conns_per_ip})"
            )
            return None
        self.per_ip[ip] = count + 1
        self.open += 1
        ticket = Ticket(self, ip)
        self._tickets.add(ticket)
        if self._sweep is None and self.request_timeout > 0:
            self._sweep = LoopingCall(self._expire)
            self._sweep.clock = self.clock
            self._sweep.start(self.sweep_interval, now=False)
        return ticket

    @property
    def sweep_interval(self) -> float:
        """Seconds between two looks at the deadlines: a tenth of the timeout, at most 1 s."""
        return min(1.0, max(0.01, self.request_timeout / 10))

    def _refuse(self, ip: str, why: str) -> None:
        self.counters["conns_refused_total"] += 1
        now = self.clock.seconds()
        if now - self._last_refusal_log >= 60:  # a flood must not flood the log
            self._last_refusal_log = now
            self.log.warn(
                "refusing new connections: {why}; {refused} refused so far",
                why=why, refused=self.counters["conns_refused_total"],
            )
        return None

    def _release(self, ticket: Ticket) -> None:
        self._tickets.discard(ticket)
        self.open -= 1
        left = self.per_ip.get(ticket.ip, 1) - 1
        if left > 0:
            self.per_ip[ticket.ip] = left
        else:
            self.per_ip.pop(ticket.ip, None)  # many addresses must not grow the dict
        if not self._tickets and self._sweep is not None:
            self._sweep.stop()
            self._sweep = None

    def _expire(self) -> None:
        now = self.clock.seconds()
        late = [t for t in self._tickets if t.deadline is not None and t.deadline <= now]
        for ticket in late:
            if ticket.deadline is not None and ticket.deadline <= now:
                ticket.deadline = None
                ticket.on_expire()

    def timed_out(self) -> None:
        """Count one connection closed for missing its deadline."""
        self.counters["request_timeouts"] += 1

    # ------------------------------------------------------------------
    # file descriptors

    def fit_fd_limit(self, resource: Any = None) -> None:
        """Make room for ``max_conns`` connections in the process's file descriptors.

        Raises the soft ``RLIMIT_NOFILE`` towards the hard one; when even that
        is too small, lowers ``max_conns`` to fit and says so, so that a flood
        meets the limit (and is refused) before the process runs out of
        descriptors (when every new client would be reset).
        """
        if resource is None:
            try:
                import resource  # POSIX only
            except ImportError:
                return
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = self.max_conns + FD_RESERVE
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
        if soft != resource.RLIM_INFINITY and soft < wanted:
            fitted = max(1, soft - FD_RESERVE)
            self.log.warn(
                "--max-conns {asked} does not fit the {soft} file descriptors this "
                "process may open (ulimit -n); serving at most {fitted} connections",
                asked=self.max_conns, soft=soft, fitted=fitted,
            )
            self.max_conns = fitted


class OutputGauge:
    """A bound on a connection's unsent output, from its transport's signals.

    A transport with a registered streaming producer calls
    ``pauseProducing`` when its buffer passes its own size (64 KiB for TCP)
    and ``resumeProducing`` once everything is sent; it says nothing in
    between. So the unsent output is at most that buffer plus everything
    written since the transport said it was full: once that passes
    ``limit``, :attr:`over` is true and the front end stops reading until
    :meth:`drained`.

    :param limit: bytes written past a full transport buffer that are allowed.
    """

    __slots__ = ("limit", "full", "written")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.full = False
        self.written = 0

    def transport_full(self) -> None:
        """The transport's buffer passed its size (it says so on every write then)."""
        if not self.full:
            self.full = True
            self.written = 0

    def drained(self) -> None:
        """The transport sent everything."""
        self.full = False
        self.written = 0

    def wrote(self, size: int) -> None:
        """``size`` more bytes were handed to the transport."""
        if self.full:
            self.written += size

    @property
    def over(self) -> bool:
        """Whether the unsent output may be past the limit."""
        return self.full and self.written >= self.limit
