"""Finding the cluster at start-up (``--peers``, SPEC §5).

Every half second the node says :class:`~doozer.consensus.messages.Hello` to
each named peer, and every node answers with a
:class:`~doozer.consensus.messages.Status`. From the answers:

- a peer in a live cluster of our name: copy its snapshot and attach;
- every peer answered, none is in any cluster, and our address is the
  lowest: start the cluster, with one free CAL slot per peer;
- otherwise keep asking, and say in the log whom we are waiting for.

So a restarted node cut off from its live cluster never starts a second
cluster of the same name: it needs every peer to answer "in no cluster".

A peer named by a host name is sent to at what its name resolves to (a
:class:`~doozer.node.names.NameBook`), looked up again while it does not
answer. Answers are matched to the ``--peers`` entry they answer by the
address the peer says it has or the one they came from; "the lowest
address" compares the addresses the nodes say they have (their
``--listen`` as given), so every node ranks them alike however each was
named in the others' ``--peers``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer.addr import Addr, format_addr, parse_addr
from doozer.consensus.messages import NO_CLUSTER, Hello, Message, Status
from doozer.node.names import NameBook
from doozer.node.snapshot import Snapshot

if TYPE_CHECKING:  # the service wires discovery to its node; typing only
    from doozer.node.node import Node

HELLO_INTERVAL = 0.5
#: An answer older than this no longer counts as the peer's state.
STATUS_TTL = 3.0
LOG_INTERVAL = 5.0


def decide(
    me: Addr, cluster: str, peers: list[Addr], statuses: dict[Addr, Status]
) -> tuple[str, Optional[Addr]]:
    """What to do given the peers' recent answers (pure, so it is tested alone).

    :param statuses: the answers by ``--peers`` entry.
    :returns: ``("attach", addr)``, ``("start", None)`` or ``("wait", None)``.
    """
    for addr in peers:
        status = statuses.get(addr)
        if status is not None and status.cluster_name == cluster and status.cluster_id != NO_CLUSTER:
            return "attach", addr
    answered_free = all(
        (s := statuses.get(addr)) is not None and s.cluster_id == NO_CLUSTER and s.cluster_name == cluster
        for addr in peers
    )
    if answered_free and all(me < _said(statuses[addr], addr) for addr in peers):
        return "start", None
    return "wait", None


def _said(status: Status, entry: Addr) -> Addr:
    """The address a peer says it has (its ``--listen``), else its entry."""
    try:
        return parse_addr(status.addr)
    except ValueError:
        return entry


class Discovery:
    """Runs the Hello/Status rounds of one node until it is in a cluster.

    :param node: the :class:`~doozer.node.Node` (not yet running).
    :param peers: the addresses of ``--peers``.
    :param send_to: sends a message to an address (the UDP transport).
    :param fetch: fetches a peer's snapshot: ``fetch(addr) -> Deferred[Snapshot]``.
    :param clock: time and scheduling.
    :param names: resolves peers' host names (default: IP addresses only).
    """

    log = Logger()

    def __init__(
        self,
        node: "Node",
        peers: list[Addr],
        send_to: Callable[[Addr, Message], object],
        fetch: Callable[[Addr], "defer.Deferred[Snapshot]"],
        clock: IReactorTime,
        names: Optional[NameBook] = None,
    ) -> None:
        self.node = node
        self.names = names if names is not None else NameBook(clock, None)
        self.me = parse_addr(node.addr)
        own = self.names.lookup(self.me)
        # Our own address, however named, is not a peer (a datagram to it
        # would be dropped as looped, and we would wait for it forever).
        self.peers = [p for p in peers if p != self.me and (own is None or self.names.lookup(p) != own)]
        self.send_to = send_to
        self.fetch = fetch
        self.clock = clock
        self.statuses: dict[Addr, Status] = {}
        self._heard_at: dict[Addr, float] = {}
        self._started_at = clock.seconds()
        self._call: Optional[IDelayedCall] = None
        self._fetching = False
        self._logged_at = float("-inf")
        self._fetch_logged_at = float("-inf")
        node.peers.discovery_handlers[Hello] = self.on_hello
        node.peers.discovery_handlers[Status] = self.on_status

    def start(self) -> None:
        """Begin (or, without peers, start a one-member cluster at once)."""
        if not self.peers:
            self.node.start_genesis()
            return
        self.log.info(
            "doozer node {id} at {addr} looking for cluster {cluster!r} among {peers}",
            id=self.node.id,
            addr=self.node.addr,
            cluster=self.node.cluster,
            peers=", ".join(format_addr(p) for p in self.peers),
        )
        self._round()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def on_hello(self, sender: str, hello: Hello, addr: Addr) -> None:
        """Every node answers who it is, whatever its state: to the address
        the Hello came from, never to one written inside it (that made any
        node a reflector of Status datagrams to a third party)."""
        node = self.node
        self.send_to(
            addr,
            Status(
                node.addr,
                node.cluster,
                node.cluster_id or NO_CLUSTER,
                node.member if node.running else False,
                node.applied_seqn,
            ),
        )

    def on_status(self, sender: str, status: Status, source: Addr) -> None:
        addr = self._entry(status, source)
        if addr is None:
            return
        self.statuses[addr] = status
        self._heard_at[addr] = self.clock.seconds()

    def _entry(self, status: Status, source: Addr) -> Optional[Addr]:
        """The ``--peers`` entry a Status answers: the one it names, else
        the one whose address it came from."""
        try:
            said: Optional[Addr] = parse_addr(status.addr)
        except ValueError:
            said = None
        if said in self.peers:
            return said
        came_from = (source[0], source[1])
        for peer in self.peers:
            if self.names.lookup(peer) == came_from:
                return peer
        return None

    def _round(self) -> None:
        self._call = None
        if self.node.running:
            return
        now = self.clock.seconds()
        fresh = {a: s for a, s in self.statuses.items() if now - self._heard_at[a] <= STATUS_TTL}
        action, addr = decide(self.me, self.node.cluster, self.peers, fresh)
        if action == "start":
            self.node.start_genesis(empty_slots=len(self.peers))
            return
        if action == "attach" and addr is not None and not self._fetching:
            self._attach(addr)
        elif action == "wait" and now - self._logged_at >= LOG_INTERVAL:
            self._logged_at = now
            self._log_waiting(fresh)
        for peer in self.peers:
            if now - self._heard_at.get(peer, self._started_at) > STATUS_TTL:
                self.names.silent(peer)  # look its name up again (rate-limited)
            ip = self.names.lookup(peer)
            if ip is not None:
                self.send_to(ip, Hello(self.node.addr, self.node.cluster))
        self._call = self.clock.callLater(HELLO_INTERVAL, self._round)

    def _attach(self, addr: Addr) -> None:
        self._fetching = True
        # Retried every round while it fails (a wrong secret, say): say so
        # once per LOG_INTERVAL, not four lines a second.
        now = self.clock.seconds()
        loud = now - self._fetch_logged_at >= LOG_INTERVAL
        if loud:
            self._fetch_logged_at = now
            self.log.info("copying the cluster's state from {addr}", addr=format_addr(addr))

        def fetched(snap: Snapshot) -> None:
            self._fetching = False
            if not self.node.running:
                self.node.install(snap)

        def failed(f: Failure) -> None:
            self._fetching = False
            if not loud:
                return
            self.log.warn(
                "could not copy the cluster's state from {addr}: {err}; will retry",
                addr=format_addr(addr),
                err=f.getErrorMessage(),
            )

        # maybeDeferred: a fetch that raises at once must not end discovery.
        # From the peer's address as resolved: its HTTP port answers to that
        # Host whatever its --listen (SPEC §12 "Browsers").
        defer.maybeDeferred(self.fetch, self.names.lookup(addr) or addr).addCallbacks(fetched, failed)

    def _log_waiting(self, fresh: dict[Addr, Status]) -> None:
        silent = [format_addr(p) for p in self.peers if p not in fresh]
        other = [
            f"{format_addr(a)} (cluster {s.cluster_name!r})"
            for a, s in fresh.items()
            if s.cluster_name != self.node.cluster
        ]
        parts = []
        if silent:
            parts.append("no answer yet from " + ", ".join(silent))
        if other:
            parts.append("of another cluster: " + ", ".join(other))
        if not parts:
            lowest = format_addr(min(self.peers + [self.me]))
            parts.append(f"every peer answered; {lowest} (the lowest address) starts the cluster")
        self.log.info("waiting for peers: {why}", why="; ".join(parts))
