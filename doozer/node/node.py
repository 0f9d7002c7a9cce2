"""One doozer node: the single implementation of every client operation.

The node wires a :class:`~doozer.store.Store` to a consensus
:class:`~doozer.consensus.sequencer.Sequencer`. Every write becomes a
:class:`~doozer.store.mutation.Mutation` proposed to the sequencer; decided
instances are applied to the store in seqn order, and the writer is answered
from the store's outcome for its ``(node id, request id)``. A one-member
cluster takes exactly this path too.

Both front ends (HTTP in :mod:`doozer.server.http.api`, doozerd's protocol in
:mod:`doozer.server.doozerd.protocol`) call only the public methods here.
The client verbs (writes, leases, reads) come from
:class:`~doozer.node.verbs.ClientVerbs`, each handed in one line to the
collaborator that does the work; installing a snapshot goes to
:mod:`doozer.node.snapshot`, the consensus turns to
:class:`~doozer.node.pump.Pump`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from doozer.addr import format_addr
from doozer.store import mutation
from doozer.store import backup as store_backup
from doozer.node.admission import Admission
from doozer.consensus.messages import Message
from doozer.consensus.durable import Recovered
from doozer.consensus.sequencer import Sequencer
from doozer.errors import DoozerError, too_large
from doozer.node.durability import NodeStorage
from doozer.node.info import ClusterInfo
from doozer.node.leaving import Leaving
from doozer.node.membership import Membership
from doozer.node.peers import Peers
from doozer.node.pump import Pump
from doozer.node.replica import Replica
from doozer.node import snapshot as node_snapshot
from doozer.node.snapshot import Snapshot
from doozer.node.leases import LeaseTimers
from doozer.node.verbs import ClientVerbs
from doozer.node.writes import Writes
from doozer.store import Outcome, Store

if TYPE_CHECKING:  # build_node reads the server's options; typing only
    from doozer.node.datadir import DataDir
    from doozer.server.config import Config

#: Seconds a write may wait for its decision before it answers UNAVAILABLE.
WRITE_TIMEOUT = 10.0

#: Bytes in one file's value, by default (``--max-value``).
MAX_VALUE = 32768

#: Instances after the one this node has applied within which a write it
#: proposes must be decided (its deadline, see :mod:`doozer.store.dedup`): long
#: enough for any queue and any retransmission, short enough that the
#: de-duplication record stays small however fast the cluster writes.
ITEM_LIFETIME = 1000

#: Seconds for which every decided value stays in the log to answer WANT
#: (besides the last 1,000, within the log's byte bound): longer than a
#: snapshot copy takes, so that a node that installs one goes on from the
#: log however fast the cluster decides (soak seed 15311: copies of 2-5 s
#: while 1,000 instances took under 2 s, and a node copied 34 snapshots in a
#: row). It also lets a member away for less than this catch up by WANT.
RETAIN_SECONDS = 30.0

Send = Callable[[str, Message], object]


class Node(ClientVerbs):
    """A doozer node: store + sequencer + the operations clients call.

    :param node_id: this process's id (new at every start, never reused).
    :param addr: ``HOST:PORT`` where clients and peers reach this node.
    :param cluster: the cluster name.
    :param store: the replicated store.
    :param sequencer: the consensus core deciding the order of writes.
    :param clock: the reactor's time and scheduling.
    :param send: delivers a consensus message to a peer id (the transport);
        unused by a one-member cluster.
    :param pulse: seconds between records of the applied rev in
        ``/ctl/node/<id>/applied``.
    :param write_timeout: seconds before an undecided write answers
        ``UNAVAILABLE``.
    :param max_value: bytes in one file's value (``--max-value``).
    :param item_lifetime: instances within which a proposed write must be
        decided (its deadline is the applied seqn plus this); at least 2α.
    :param retain_seconds: seconds for which decided values stay in the
        sequencer's log to answer peers catching up (:data:`RETAIN_SECONDS`).
    """

    log = Logger()

    def __init__(
        self,
        node_id: str,
        addr: str,
        cluster: str,
        store: Store,
        clock: IReactorTime,
        *,
        rng: random.Random,
        alpha: int = 50,
        fill: float = 0.1,
        timeout: float = 60.0,
        pulse: float = 1.0,
        write_timeout: float = WRITE_TIMEOUT,
        max_value: int = MAX_VALUE,
        item_lifetime: int = ITEM_LIFETIME,
        retain_seconds: float = RETAIN_SECONDS,
        admission: Optional[Admission] = None,
        send: Optional[Send] = None,
        data: Optional["DataDir"] = None,
        snapshot_every: int = 10_000,
    ) -> None:
        self.id = node_id
        self.addr = addr
        self.cluster = cluster
        self.cluster_id: Optional[str] = None
        self.store = store
        self.replica: Optional[Replica] = None
        self.clock = clock
        self.rng = rng
        self.alpha = alpha
        self.fill = fill
        self.timeout = timeout
        self._send = send or (lambda dest, message: None)
        self.pulse = pulse
        self.write_timeout = write_timeout
        self.max_value = max_value
        self.item_lifetime = max(item_lifetime, 2 * alpha)
        self.retain_seconds = retain_seconds
        #: bounds on the writes pending here (BUSY) and the store (NOSPACE)
        self.admission = admission or Admission()
        self.admission.store_size = lambda: self.store.size
        self.pump = Pump(self)
        self._running_since = 0.0
        self.on_running: list[Callable[[], None]] = []
        self.on_chores: list[Callable[[], None]] = []
        #: called with ``(seqn, items, outcomes)`` for each instance applied,
        #: before its writers are answered (the simulators record the log)
        self.on_applied: list[Callable[[int, list[bytes], list[Outcome]], None]] = []
        #: called once when applying failed (a bug): the node has stopped.
        self.on_fatal: list[Callable[[str], None]] = []
        self.failed: Optional[str] = None
        #: what the node refused or dropped, by reason (for /metrics)
        self.counters: dict[str, int] = {}
        #: snapshots copied from a peer and installed (for /metrics)
        self.snapshot_installs = 0
        #: the transport's side of ``/_peer/consensus`` (set by the service).
        self.transport_state: Optional[Callable[[], dict[str, Any]]] = None
        self.running = False
        #: the collaborators: what it takes from peers, the CAL side of the
        #: node, and what it says of itself and its cluster
        self.peers = Peers(self)
        self.membership = Membership(self)
        #: ``doozer leave`` and the SIGTERM hand-off (SPEC §11)
        self.leaving = Leaving(self)
        #: its side of the data dir (--data-dir), or None: memory only
        self.storage = None if data is None else NodeStorage(self, data, snapshot_every)
        if data is not None:
            self.on_applied.append(data.decided)  # the decided log, for a fast restart
        #: the writes proposed here and not answered yet (D6: request ids of
        #: this incarnation; 0 in memory-only mode)
        self.writes = Writes(self, 0 if self.storage is None else self.storage.incarnation)
        self.info = ClusterInfo(self)
        #: lease expiry timers and keepalives (SPEC §9, CONSENSUS.md §L)
        self.lease_timers = LeaseTimers(self)

    @property
    def sequencer(self) -> Optional[Sequencer]:
        """The consensus core (None until this node is in a cluster)."""
        return None if self.replica is None else self.replica.sequencer

    def require_sequencer(self) -> Sequencer:
        """The consensus core, for what runs only once this node is in a
        cluster (the pump, the chores, which start with it).

        :raises RuntimeError: when it is in none (a bug in the caller).
        """
        if self.replica is None:
            raise RuntimeError("this node is in no cluster yet")
        return self.replica.sequencer

    @property
    def applied_seqn(self) -> int:
        """The last consensus instance applied to the store."""
        return self.store.seqn

    def _new_sequencer(
        self, genesis: list[str], alpha: int, first_seqn: int, recovered: Optional[Recovered] = None
    ) -> Sequencer:
        durable = None if self.storage is None else self.storage.durability(recovered)
        return Sequencer(
            self.id,
            genesis=genesis,
            alpha=alpha,
            fill=self.fill,
            rng=self.rng,
            first_seqn=first_seqn,
            retain_seconds=self.retain_seconds,
            now=self.clock.seconds(),
            durable=durable,
        )

    # ------------------------------------------------------------------
    # life cycle

    def start_genesis(self, empty_slots: int = 0, cluster_id: Optional[str] = None) -> None:
        """Start a new cluster with this node as its only member.

        The cluster's bookkeeping (/ctl/name, the CAL, this node's record)
        is written through consensus like any other write.

        :param empty_slots: free CAL slots to create for peers that will
            attach (one per node named in ``--peers``).
        :param cluster_id: the new cluster's id (random when not given).
        """
        self.cluster_id = cluster_id or self.new_id()
        if self.storage is not None:
            self.storage.save_genesis(self.cluster_id)
        sequencer = self._new_sequencer([self.id], self.alpha, 1)
        self.replica = Replica(self.store, sequencer, self.cluster, self.cluster_id)
        writes = [("/ctl/name", self.cluster.encode()), ("/ctl/cal/0", self.id.encode())]
        writes += [(f"/ctl/cal/{n}", b"") for n in range(1, empty_slots + 1)]
        writes += self.membership.self_record()
        for path, value in writes:
            self.writes.internal(mutation.SET, path, value)
        self.log.info(
            "doozer node {id} started cluster {cluster!r} at {addr} as its first member"
            "{others}",
            id=self.id,
            cluster=self.cluster,
            addr=self.addr,
            others=f", with {empty_slots} free slots for its peers" if empty_slots else "",
        )
        self._become_running()

    def install(self, snap: Snapshot) -> bool:
        """Adopt a peer's snapshot (:func:`doozer.node.snapshot.install`)."""
        return node_snapshot.install(self, snap)

    def _start_from(self, snap: Snapshot, recovered: Optional[Recovered] = None) -> None:
        """Join the cluster of ``snap`` from it: a node copying its first
        snapshot, or one restarting from its data dir with the acceptor
        state its records hold (:meth:`NodeStorage.resume
        <doozer.node.durability.NodeStorage.resume>`)."""
        self.replica = Replica.from_snapshot(
            snap,
            self.store,
            lambda alpha, first: self._new_sequencer([], alpha, first, recovered),
        )
        self.cluster_id = snap.cluster_id
        self.alpha = snap.alpha
        self.item_lifetime = max(self.item_lifetime, 2 * self.alpha)
        self.lease_timers.sync()

    def snapshot(self) -> Snapshot:
        """This node's state at the current instance boundary, for a peer."""
        replica = self._in_cluster()
        try:
            return replica.snapshot()
        except LookupError as e:
            raise DoozerError("OTHER", str(e)) from None

    def backup(self) -> Iterator[bytes]:
        """A backup of the store as it is now, at one rev, in pieces
        (:mod:`doozer.store.backup`); any node in a cluster, member or not.

        :raises DoozerError: ``READONLY`` when this node is in no cluster yet
            (its empty store is nobody's data).
        """
        self._in_cluster()
        return store_backup.chunks(
            self.store, cluster=self.cluster, cluster_id=self.cluster_id or "",
            node=self.id, created=self.clock.seconds(),
        )

    def _become_running(self) -> None:
        self.running = True
        self._running_since = self.clock.seconds()
        self.membership.schedule_pulse()
        self.membership.schedule_chores()
        for callback in self.on_running:
            callback()

    def stop(self) -> None:
        """Stop timers and fail the writes still waiting."""
        self.running = False
        self.pump.stop()
        self.membership.stop()
        self.lease_timers.stop()
        self.writes.fail_all("the node is shutting down")

    # ------------------------------------------------------------------
    # state

    @property
    def member(self) -> bool:
        """Whether this node holds a CAL slot (and so votes and proposes)."""
        return self.id in self.store.cal()

    @property
    def writable(self) -> bool:
        """Whether this node takes client writes (not while shutting down)."""
        return self.running and (self.member or self._founding) and not self.leaving.handing_off

    @property
    def _founding(self) -> bool:
        """A node that just started a new cluster: the CAL naming it is
        proposed, not applied yet (an fsync away with a data dir), but its
        sequencer already counts it as the one member. A write then queues
        behind the cluster's bookkeeping in its own instances, as it would
        a moment later; refusing it made ``/readyz`` (ready) and a write
        (``READONLY``) disagree. No CAL applied at all: never a node that
        left its slot."""
        seq = self.sequencer
        return seq is not None and not self.store.cal() and seq.is_member()

    def check_writable(self) -> None:
        """Raise ``READONLY`` unless this node takes client writes (the one
        rule both front ends ask before they read a write's body)."""
        if self.leaving.handing_off:
            raise DoozerError(
                "READONLY", "this node is shutting down; write to another member (see /v1/cluster)"
            )
        if self.sequencer is None:
            raise DoozerError(
                "READONLY",
                "this node is in no cluster yet (it is forming or joining one); wait "
                "until GET /readyz answers 200, or write to a member (see /v1/cluster)",
            )
        if not self.writable:
            raise DoozerError(
                "READONLY",
                "this node is not a member of the cluster and cannot take writes; "
                "write to a member (see /v1/cluster)",
            )

    def check_value_size(self, size: int) -> None:
        """Raise ``TOO_LARGE`` for a value of ``size`` bytes over ``--max-value``."""
        if size > self.max_value:
            raise too_large(self.max_value)

    def _in_cluster(self) -> Replica:
        """The replica, or ``READONLY`` when this node is in no cluster yet."""
        if self.replica is None:
            raise DoozerError("READONLY", "this node is in no cluster yet")
        return self.replica

    @property
    def voting(self) -> bool:
        """Whether this node's vote counts in the quorum of the next instance
        (a member that just claimed its slot votes only from α instances
        after its claim, which the members skip to at once)."""
        return self.running and self.sequencer is not None and self.sequencer.is_member()

    def new_id(self) -> str:
        """A fresh random id (a lease's, a new cluster's), from this node's
        randomness (seeded in the simulations)."""
        return _random_id(self.rng)

    # ------------------------------------------------------------------
    # consensus plumbing (the turns themselves: doozer/node/pump.py)

    def schedule_pump(self) -> None:
        """Run the sequencer at the end of this reactor turn."""
        self.pump.schedule()

    def _pump(self) -> None:
        # Every turn comes through here: the simulators wrap this method.
        self.pump.run()

    def _fail(self, why: str, advice: Optional[str] = None) -> None:
        """Stop for good after a bug in applying: the instances handed out
        after the failed one will never be applied here, so this node must
        neither vote nor serve from a store that may differ from its peers'."""
        self.failed = why
        self.log.critical(
            "doozer node {id} stops: {why}; {advice}",
            id=self.id,
            why=why,
            advice=advice or "its store may differ from the cluster's. Restart it: it rejoins "
            "as a new node and copies the cluster's state",
        )
        self.stop()
        for callback in self.on_fatal:
            callback(why)


def _random_id(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def build_node(
    config: "Config",
    clock: IReactorTime,
    node_id: str,
    rng: Optional[random.Random] = None,
    data: Optional["DataDir"] = None,
) -> Node:
    """Wire a store and a sequencer into a node from a :class:`~doozer.server.config.Config`.

    :param rng: the node's randomness (a seeded ``random.Random`` in tests).
    """
    return Node(
        node_id,
        format_addr(config.listen),
        config.cluster,
        Store(hist=config.hist),
        clock,
        rng=rng or random.Random(),
        alpha=config.alpha,
        fill=config.fill,
        timeout=config.timeout,
        pulse=config.pulse,
        write_timeout=config.write_timeout,
        max_value=config.max_value,
        admission=Admission(config.max_pending, config.max_pending_bytes, config.quota_bytes),
        data=data,
        snapshot_every=config.snapshot_every,
    )

