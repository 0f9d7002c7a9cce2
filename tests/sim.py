"""The consensus simulator: N replicas on a simulated network.

Everything is driven by one :class:`twisted.internet.task.Clock` and one
seeded :class:`random.Random` (shared by the network, the scenario and every
sequencer), so a seed replays exactly. Messages go through the real wire
format (:func:`doozer.consensus.messages.pack` / ``unpack``).

Each node is the product's :class:`doozer.node.replica.Replica`: a real
:class:`~doozer.consensus.sequencer.Sequencer` whose decisions a real
:class:`~doozer.store.Store` applies, so ``M(s)`` comes from the store's own
CAL order, de-duplication is the store's own bounded record, and snapshots
are the replica's own. Writes are real mutations (``SET /w/...`` with a
unique value; CAL changes are ``SET /ctl/cal/N``), each with the deadline a
node gives it. What the simulator adds is the network, the faults, and
writers that wait for their outcome, as :class:`doozer.node.Node` does
(without its chores: membership changes are scripted here; the node
simulation, :mod:`nodesim`, runs the chores).

The network loses, duplicates, delays (hence reorders) and partitions
messages (both ways or one way); nodes pause and crash (for good: a
restarted process has a new id) and new nodes join by snapshot, then
become members through a CAL slot.

Invariants (:mod:`simcheck`) are checked as the run goes, on the nodes' own
state: agreement on chosen values and the acceptors' invariants, one log,
no request applied twice, no request of a node's own in two decided
instances, one ``M(s)`` everywhere. At the end: acknowledged writes are in
the log at their seqn, and every pending write was answered after healing.
A violation raises :class:`Violation`, whose message names the seed.
"""

from __future__ import annotations

import random
from typing import Any, Optional

from twisted.internet.task import Clock

from doozer.store import mutation as mut
from doozer.consensus import durable as dur
from doozer.consensus import messages
from doozer.consensus.instance import digest
from doozer.consensus.sequencer import Sequencer
from doozer.node.snapshot import Snapshot
from doozer.node.replica import Replica
from doozer.store import Store
from doozer.store import snapshot as store_snapshot
from simcheck import Checker
from simdisk import SimDisk
from simnet import SimNet
from simunsafe import UnsafeDurability

NAME = "sim"
CLUSTER_ID = "sim-cluster"


class Violation(AssertionError):
    """A consensus invariant does not hold."""


class SimNode:
    """One node: a replica, and the writes it waits for."""

    def __init__(self, node_id: str, replica: Replica) -> None:
        self.id = node_id
        self.replica = replica
        self.seq = replica.sequencer
        self.alive = True
        self.requests = 0
        self.pending: dict[tuple[str, int], bytes] = {}  # key -> item, not yet answered
        self.acked: dict[tuple[str, int], int] = {}  # key -> seqn it was applied in
        self.answered: set[tuple[str, int]] = set()  # refused, or settled by a snapshot
        self.unknown: set[tuple[str, int]] = set()  # answered: indeterminate
        self.call = None
        self.call_at: Optional[float] = None
        self.paused_until = 0.0  # a SIGSTOPped process: no input handled
        self.disk: Optional[SimDisk] = None  # durable nodes: the data dir

    @property
    def last(self) -> int:
        """The last instance applied."""
        return self.replica.applied_seqn


class Sim:
    """A seeded simulated cluster.

    :param seed: the seed of the one random generator.
    :param n: genesis members (CAL slots ``0 .. n-1``).
    :param alpha: membership delay (small, so CAL changes take effect).
    :param retain: decided values each node keeps (small, so laggards need
        snapshots).
    :param item_lifetime: a write's deadline is the writer's applied seqn
        plus this (small, so deadlines and the de-duplication record's
        bound are reached).
    """

    def __init__(
        self,
        seed: int,
        n: int = 3,
        alpha: int = 4,
        fill: float = 0.1,
        retain: int = 40,
        bundle: bool = False,
        item_lifetime: int = 1000,
        durable: bool = False,
        fsync: tuple[float, float] = (0.0002, 0.005),
        unsafe: frozenset = frozenset(),
    ) -> None:
        self.seed = seed
        # Durable nodes (CONSENSUS.md §D): records written with group commit
        # to a SimDisk, messages held until synced, crashes that restart the
        # node under its id from what was durable. ``unsafe`` names §D rules
        # to drop (tests that show the checks catch each one): the nodes
        # then run the test-side :class:`simunsafe.UnsafeDurability`.
        self.durable = durable
        self.fsync = fsync
        self.unsafe = frozenset(unsafe)
        self.restarts = 0
        #: node -> (message type, downtime): crash it right after it next
        #: sends such a message, and restart it after the downtime
        self.crash_after: dict[str, tuple[type, float]] = {}
        #: called at each such restart (a schedule may heal a cut there)
        self.on_restart: Any = None
        self.request_items: dict[tuple, bytes] = {}  # (origin, request) -> item decided
        # As the node does: everything one pump sends to a peer goes in one
        # Bundle datagram (lost, duplicated or delayed as a whole).
        self.bundle = bundle
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.alpha = alpha
        self.fill = fill
        self.retain = retain
        self.item_lifetime = max(item_lifetime, 2 * alpha)
        #: the datagrams in flight (shared with tests/nodesim.py)
        self.net = SimNet(self.rng, (0.0005, 0.005))
        self._dirty: list[SimNode] = []
        self.nodes: dict[str, SimNode] = {}
        self.genesis = [f"n{i}" for i in range(n)]
        self.checker = Checker(self.fail)
        self.forwarded: set[bytes] = set()
        self.own_seqn: dict[bytes, int] = {}  # item -> the instance that decided it
        self.installs = 0
        self._writes = 0
        store = Store(hist=10_000)
        cal = [mut.set_("genesis", i + 1, f"/ctl/cal/{i}", node.encode(), until=1).encode()
               for i, node in enumerate(self.genesis)]
        store.apply(cal, seqn=0)
        self._genesis_store = store_snapshot.dump(store)
        for node_id in self.genesis:
            self._add_node(node_id, genesis=self.genesis)

    # -- nodes -----------------------------------------------------------

    def _sequencer(
        self, node_id: str, genesis: list, first_seqn: int = 1,
        recovered: Optional[dur.Recovered] = None, incarnation: int = 1,
    ) -> Sequencer:
        durable = None
        if self.durable and self.unsafe:
            durable = UnsafeDurability(incarnation, recovered, self.unsafe)
        elif self.durable:
            durable = dur.Durability(incarnation, recovered)
        return Sequencer(
            node_id,
            genesis=genesis,
            alpha=self.alpha,
            fill=self.fill,
            rng=self.rng,
            retain=self.retain,
            first_seqn=first_seqn,
            now=self.clock.seconds(),
            durable=durable,
        )

    def _add_node(self, node_id: str, genesis: list) -> SimNode:
        store = store_snapshot.load(self._genesis_store, hist=10_000)
        replica = Replica(store, self._sequencer(node_id, genesis), NAME, CLUSTER_ID)
        node = self.nodes[node_id] = SimNode(node_id, replica)
        if self.durable:
            node.disk = SimDisk(self.fsync)
            node.requests = self._first_request(1)
        self.checker.window(node_id, node.seq)
        self._schedule(node)
        return node

    def _first_request(self, incarnation: int) -> int:
        # D6: the request ids of an incarnation (the product's rule).
        return 0 if "D6" in self.unsafe else dur.first_request_id(incarnation)

    def fail(self, why: str) -> None:
        """Raise a :class:`Violation` naming the seed."""
        raise Violation(f"seed {self.seed}: {why}")

    def live(self) -> list[SimNode]:
        """The nodes that have not crashed, in id order."""
        return [n for n in self.nodes.values() if n.alive]

    def crash(self, node_id: str) -> None:
        """Stop a node for good; its in-memory state is lost."""
        node = self.nodes[node_id]
        if not node.alive:
            return
        node.alive = False
        if node.call is not None and node.call.active():
            node.call.cancel()
        if node.disk is not None:
            for record in node.disk.crash(self.rng):
                self._durable_vote(node, record)
            node.unknown.update(node.pending)  # its writers saw the connection drop
        node.pending.clear()

    def restart(self, node_id: str) -> None:
        """A crashed durable node starts again under its id, from what its
        data dir holds: the synced records (:class:`Recovered
        <doozer.consensus.durable.Recovered>`), the snapshot at its floor,
        and a new incarnation. Its decided log and store are not kept (they
        are for fast restarts, not safety): it catches up from its peers."""
        node = self.nodes[node_id]
        disk = node.disk
        assert disk is not None and not node.alive
        disk.incarnation += 1
        recovered = dur.Recovered.replay(node_id, disk.incarnation, disk.synced)
        floor = recovered.floor
        if floor == 0:
            store = store_snapshot.load(self._genesis_store, hist=10_000)
            seq = self._sequencer(node_id, self.genesis, 1, recovered, disk.incarnation)
            replica = Replica(store, seq, NAME, CLUSTER_ID)
        else:
            replica = Replica.from_snapshot(
                disk.snapshots[floor], Store(hist=10_000),
                lambda alpha, first: self._sequencer(node_id, [], first, recovered, disk.incarnation),
            )
        node.replica = replica
        node.seq = replica.sequencer
        node.alive = True
        node.paused_until = 0.0
        node.requests = self._first_request(disk.incarnation)
        self.restarts += 1
        self.checker.window(node_id, node.seq)
        self._mark(node)
        if self.on_restart is not None:
            self.on_restart(node_id)

    def snapshot_and_collect(self, node_id: str) -> None:
        """A durable node saves a snapshot of its store and raises its floor
        there, so that the acceptor records below it may go (D7)."""
        node = self.nodes[node_id]
        if not node.alive or node.disk is None or node.last == 0:
            return
        snap = self._snapshot(node)
        node.disk.snapshots[snap.seqn] = snap  # a file written whole first
        node.seq.raise_floor(snap.seqn)
        self._mark(node)

    # -- durable nodes: the writer ------------------------------------------

    def _write(self, node: SimNode) -> None:
        """Hand the node's new records to its writer (group commit)."""
        disk = node.disk
        assert disk is not None
        disk.append(*node.seq.take_records())
        self._start_batch(node)
        durable = node.seq.durable
        assert durable is not None
        if durable.collectable > disk.collected:
            disk.collect(durable.collectable)

    def _start_batch(self, node: SimNode) -> None:
        disk = node.disk
        assert disk is not None
        latency = disk.start(self.rng)
        if latency is not None:
            self.clock.callLater(latency, self._on_synced, node, disk.generation)

    def _on_synced(self, node: SimNode, generation: int) -> None:
        disk = node.disk
        assert disk is not None
        if disk.generation != generation:
            return  # the node crashed meanwhile: SimDisk.crash decided
        token, records = disk.complete()
        for record in records:
            self._durable_vote(node, record)
        node.seq.synced(token, self.clock.seconds())
        self._start_batch(node)
        self._mark(node)
        self._flush_dirty()

    def _durable_vote(self, node: SimNode, record: dur.Record) -> None:
        """A durable accept counts as a vote (it survives any crash)."""
        if type(record) is dur.AcceptRec:
            members = self.checker.members.get(record.seqn)
            self.checker.vote(node.id, record.seqn, record.ballot, digest(record.value), members)

    def pause(self, node_id: str, duration: float) -> None:
        """Freeze a node (like SIGSTOP): it keeps its state, handles nothing,
        and on waking handles what queued up, with its stale view."""
        self.nodes[node_id].paused_until = self.clock.seconds() + duration

    def propose(self, node_id: str, m_kind: int, path: str, value: bytes = b"", rev: int = -1) -> tuple:
        """A writer at ``node_id`` proposes a mutation, with the deadline a
        node gives it; returns its key."""
        node = self.nodes[node_id]
        node.requests += 1
        until = node.last + self.item_lifetime
        m = mut.Mutation(m_kind, node_id, node.requests, path, value, rev, until=until)
        item = m.encode()
        node.pending[m.key] = item
        node.seq.propose(item, self.clock.seconds())
        self._mark(node)
        return m.key

    def write(self, node_id: str) -> tuple:
        """A client writes a unique value to a file of its own."""
        self._writes += 1
        return self.propose(node_id, mut.SET, f"/w/{node_id}/{self._writes}", b"%d" % self._writes)

    def add_member(self, node_id: str, member: str) -> tuple:
        """Propose, at ``node_id``, that ``member`` takes a new CAL slot."""
        return self.propose(node_id, mut.SET, f"/ctl/cal/{self._free_slot(node_id)}", member.encode(), 0)

    def remove_member(self, node_id: str, member: str) -> Optional[tuple]:
        """Propose, at ``node_id``, that ``member``'s slot is emptied."""
        for slot, holder in self.nodes[node_id].replica.store.cal_slots():
            if holder == member:
                return self.propose(node_id, mut.SET, f"/ctl/cal/{slot}", b"")
        return None

    def _free_slot(self, node_id: str) -> int:
        used = {slot for slot, _ in self.nodes[node_id].replica.store.cal_slots()}
        return min(set(range(len(used) + 1)) - used)

    def join(self, node_id: str, source_id: str) -> SimNode:
        """A new node copies ``source``'s snapshot and follows the log."""
        snap = self._snapshot(self.nodes[source_id])
        replica = Replica.from_snapshot(
            snap, Store(hist=10_000), lambda alpha, first: self._sequencer(node_id, [], first)
        )
        node = self.nodes[node_id] = SimNode(node_id, replica)
        if self.durable:
            node.disk = SimDisk(self.fsync)
            node.disk.snapshots[snap.seqn] = snap
            node.requests = self._first_request(1)
        self.checker.window(node_id, node.seq)
        self._mark(node)
        return node

    def _snapshot(self, source: SimNode) -> Snapshot:
        snap = Snapshot.decode(source.replica.snapshot().encode())
        for s, m in snap.members.items():
            self.checker.membership(f"snapshot of {source.id}", s, m)
        return snap

    def install(self, node: SimNode, source: SimNode) -> None:
        """Give ``node`` the snapshot of ``source``, as a node fetches one."""
        snap = self._snapshot(source)
        if node.disk is not None and snap.seqn > node.last:
            node.disk.snapshots[snap.seqn] = snap  # on disk before its floor record
        settled = node.replica.install(snap)
        if settled is None:
            return
        self.installs += 1
        store = node.replica.store
        for key in list(node.pending):
            outcome = store.outcome_of(key)
            if outcome is not None:
                self._answer(node, key, outcome, None)
        for item in settled:
            key = mut.Mutation.decode(item).key
            if key in node.pending:  # maybe decided, maybe not
                del node.pending[key]
                node.unknown.add(key)
        self.checker.window(node.id, node.seq)
        self._mark(node)

    # -- applying ----------------------------------------------------------

    def _apply(self, node: SimNode) -> None:
        checker = self.checker
        for seqn, items, outcomes in node.replica.apply_decided():
            checker.handed_out(node.id, seqn, items)
            checker.applied(node.id, seqn, outcomes)
            for item in items:
                first = self.own_seqn.setdefault(item, seqn)
                if first != seqn and item not in self.forwarded:
                    self.fail(f"{item!r} decided at {first} and at {seqn}, never forwarded")
                key = mut.Mutation.decode(item).key
                if self.request_items.setdefault(key, item) != item:
                    self.fail(f"request id {key} decided for two different requests (at {seqn})")
            target = seqn + self.alpha
            checker.membership(node.id, target, node.seq.members(target))
            for outcome in outcomes:
                if outcome.key in node.pending:
                    self._answer(node, outcome.key, outcome, seqn)

    def _answer(self, node: SimNode, key: tuple, outcome: Any, seqn: Optional[int]) -> None:
        del node.pending[key]
        if seqn is not None and outcome.took_rev:
            node.acked[key] = seqn  # (a failed precondition takes its rev too)
        else:
            node.answered.add(key)  # expired, or settled by a snapshot

    # -- driving -----------------------------------------------------------

    def _mark(self, node: SimNode) -> None:
        if node.paused_until > self.clock.seconds():
            self._schedule(node)  # handled when it wakes
            return
        if node.alive and node not in self._dirty:
            self._dirty.append(node)

    def _pump(self, node: SimNode) -> None:
        if not node.alive:
            return
        now = self.clock.seconds()
        seq = node.seq
        votes = node.disk is None
        self.checker.observe(node.id, seq, votes)
        seq.tick(now)
        self.checker.observe(node.id, seq, votes)
        outbox = seq.take_outbox()
        if self.bundle:
            by_dest: dict[str, list] = {}
            for dest, msg in outbox:
                by_dest.setdefault(dest, []).append(msg)
            outbox = [
                (dest, msgs[0] if len(msgs) == 1 else messages.Bundle(tuple(msgs)))
                for dest, msgs in by_dest.items()
            ]
        for dest, msg in outbox:
            self._send(node.id, dest, msg)
        self._apply(node)
        if seq.snapshot_needed:
            best = max(self.live(), key=lambda n: (n.last, n.id))
            if best.last > node.last:
                self.install(node, best)
        if node.disk is not None:
            self._write(node)
        self._schedule(node)

    def _schedule(self, node: SimNode) -> None:
        when = node.seq.next_wakeup()
        if when is None or not node.alive:
            return
        now = self.clock.seconds()
        when = max(when, now)
        if node.call is not None and node.call.active():
            if node.call_at is not None and node.call_at <= when:
                return
            node.call.cancel()
        node.call_at = when
        node.call = self.clock.callLater(when - now, self._on_timer, node)

    def _on_timer(self, node: SimNode) -> None:
        node.call = None
        node.call_at = None
        wake = node.paused_until
        if wake > self.clock.seconds():
            node.call_at = wake
            node.call = self.clock.callLater(wake - self.clock.seconds(), self._on_timer, node)
            return
        self._pump(node)

    def _send(self, src: str, dst: str, msg: messages.Message) -> None:
        for one in msg.messages if isinstance(msg, messages.Bundle) else (msg,):
            if type(one) is messages.Forward:
                self.forwarded.update(one.items)
            trigger = self.crash_after.get(src)
            if trigger is not None and type(one) is trigger[0]:
                del self.crash_after[src]
                now = self.clock.seconds()
                self.at(now, self.crash, src)
                self.at(now + trigger[1], _restart_if_down, self, src)
            if type(one) is messages.Accepted and self.durable:
                # Revealed: this vote counts whatever happens to the sender.
                members = self.checker.members.get(one.seqn)
                self.checker.vote(src, one.seqn, one.ballot, one.digest, members)
        data = messages.pack(NAME, CLUSTER_ID, src, self.net.sent + 1, msg)
        self.net.send(src, dst, data, self.clock.seconds())

    def _deliver(self, src: str, dst: str, data: bytes) -> None:
        node = self.nodes[dst]
        if not node.alive:
            return
        if node.paused_until > self.clock.seconds():
            self.net.hold(node.paused_until, src, dst, data)
            return
        env = messages.unpack(data)
        msg = env.message
        for one in msg.messages if isinstance(msg, messages.Bundle) else (msg,):
            node.seq.receive(env.sender, one, self.clock.seconds())
        self._mark(node)

    def _receiver(self, dst: str) -> Optional[str]:
        """The name of the node a datagram to ``dst`` reaches (None: none)."""
        return dst if dst in self.nodes else None

    def _flush_dirty(self) -> None:
        while self._dirty:
            node = self._dirty.pop(0)
            self._pump(node)

    def run_until(self, end: float) -> None:
        """Advance simulated time to ``end``, delivering and ticking."""
        clock = self.clock
        net = self.net
        self._flush_dirty()
        while True:
            t_net = net.next_time()
            t_clk = clock.calls[0].getTime() if clock.calls else float("inf")
            t = min(t_net, t_clk)
            if t > end:
                clock.advance(max(0.0, end - clock.seconds()))
                self._flush_dirty()
                return
            clock.advance(max(0.0, t - clock.seconds()))
            for src, dst, data in net.due(t, self._receiver):
                self._deliver(src, dst, data)
            self._flush_dirty()

    def at(self, when: float, fn, *args) -> None:
        """Schedule a scenario step at simulated time ``when``."""
        def step() -> None:
            fn(*args)
            self._flush_dirty()

        self.clock.callLater(max(0.0, when - self.clock.seconds()), step)

    # -- faults ------------------------------------------------------------

    def partition(self, groups: list[list[str]]) -> None:
        """Only nodes in the same group can talk."""
        self.net.partition(groups, self.nodes)

    def deafen(self, node_id: str) -> None:
        """``node_id`` hears nobody; everybody still hears it (one way)."""
        self.net.deafen(node_id, self.nodes)

    def heal(self) -> None:
        """Everyone can talk again."""
        self.net.heal()

    # -- checks ------------------------------------------------------------

    def settled(self) -> bool:
        """All live nodes applied the same log and nothing is pending."""
        live = self.live()
        lasts = {n.last for n in live}
        return len(lasts) == 1 and not any(n.pending for n in live)

    def check(self) -> None:
        """The end-of-run invariants (the running ones are checked as it goes)."""
        keys = {
            (mut.Mutation.decode(item).key, seqn)
            for seqn, items in self.checker.log.items()
            for item in items
        }
        for node in self.nodes.values():
            for key, seqn in node.acked.items():
                if (key, seqn) not in keys:
                    self.fail(f"acknowledged {key} not in the log at {seqn}")
        for node in self.live():
            if node.pending:
                self.fail(f"{node.id} still waits for {sorted(node.pending)[:3]} at t={self.clock.seconds():.2f}")
        lasts = {n.id: n.last for n in self.live()}
        if len(set(lasts.values())) != 1:
            self.fail(f"live nodes did not converge: {lasts}")


def scenario(
    seed: int, n: int, duration: float = 2.0, recover: float = 20.0, bundle: bool = False
) -> Sim:
    """One randomized run: writes under faults, then healing and a liveness check.

    Faults (each chosen by the seed): loss, duplication, delay spread
    (reordering), partitions both ways and one way (a node that is heard
    but hears nothing: its proposals are decided without it knowing), pauses
    (SIGSTOP-like), crashes of up to ``(n - 1) // 2`` genesis members (for
    good), up to one new node joining by snapshot and taking a CAL slot
    (often with a partition around it), after which a crashed member may
    be removed. One run in ten adds 50-200 more writes; when deadlines
    are short, two in five run more instances than they span (so the
    de-duplication record forgets keys while snapshots are installed); one
    in five sends writes to odd CAL slot names (``/ctl/cal/01``); in runs
    without crashes one in five demotes a live member, which then writes
    as a non-member (FORWARD). With ``bundle`` each pump's messages for one
    peer travel in one ``Bundle``, as the node sends them.
    """
    rng = random.Random(seed ^ 0x5EED)  # scenario shape only; the run uses sim.rng
    alpha = rng.choice([2, 3, 4, 8, 50])
    sim = Sim(
        seed, n=n, alpha=alpha, retain=rng.choice([8, 40, 1000]), bundle=bundle,
        item_lifetime=rng.choice([2 * alpha, 3 * alpha + 5, 1000]),
    )
    sim.net.loss = rng.choice([0.0, 0.0, 0.05, 0.2, 0.35])
    sim.net.dup = rng.choice([0.0, 0.05, 0.2])
    sim.net.delay = (0.0002, rng.choice([0.002, 0.01, 0.05]))
    ids = list(sim.genesis)
    for _ in range(rng.randint(5, 30)):
        sim.at(rng.uniform(0, duration), _write_if_alive, sim, rng.choice(ids))
    for _ in range(rng.randint(0, 3)):
        start = rng.uniform(0, duration)
        if rng.random() < 0.3:
            sim.at(start, sim.deafen, rng.choice(ids))
        else:
            sim.at(start, sim.partition, _random_groups(rng, ids))
        sim.at(start + rng.uniform(0.05, 1.0), sim.heal)
    for _ in range(rng.randint(0, 2)):
        sim.at(rng.uniform(0, duration), sim.pause, rng.choice(ids), rng.uniform(0.05, 1.5))
    crashed = rng.sample(ids, rng.randint(0, (n - 1) // 2))
    for victim in crashed:
        sim.at(rng.uniform(0, duration), sim.crash, victim)
    if rng.random() < 0.5:
        when = rng.uniform(0, duration)
        sim.at(when, _join, sim, "j0", crashed, rng.random() < 0.5)
        if rng.random() < 0.3:  # a partition during the membership change
            sim.at(when + rng.uniform(-0.05, 0.05), sim.partition, _random_groups(rng, ids + ["j0"]))
            sim.at(when + rng.uniform(0.1, 0.8), sim.heal)
        for _ in range(rng.randint(0, 5)):
            sim.at(rng.uniform(when + 0.01, duration + 0.01), _write_if_alive, sim, "j0")
    if rng.random() < 0.1:  # heavy load: pipelining, batching, full windows
        for _ in range(rng.randint(50, 200)):
            sim.at(rng.uniform(0, duration), _write_if_alive, sim, rng.choice(ids))
    if sim.item_lifetime < 100 and rng.random() < 0.4:
        # Run past every deadline and the de-duplication record's bound.
        for i in range(rng.randint(1, 4)):
            sim.at(rng.uniform(0, duration), _burst, sim, rng.choice(ids), sim.item_lifetime)
    if rng.random() < 0.2:  # odd CAL slot names, as a client with the secret could try
        for name in rng.sample(["01", "00", "1000", "001", "1a"], 2):
            sim.at(rng.uniform(0, duration), _odd_slot, sim, rng.choice(ids), name)
    if not crashed and rng.random() < 0.2:
        # Demote a live member (as liveness removal would): it must go on
        # as a non-member, forwarding its writes.
        victim = rng.choice(ids)
        when = rng.uniform(0, duration)
        sim.at(when, _remove_if_alive, sim, rng.choice([i for i in ids if i != victim]), victim)
        for _ in range(rng.randint(1, 5)):
            sim.at(rng.uniform(when, duration + 0.5), _write_if_alive, sim, victim)
    sim.run_until(duration)
    sim.heal()
    sim.net.loss = min(sim.net.loss, 0.05)
    end = duration + recover
    while sim.clock.seconds() < end and not sim.settled():
        sim.run_until(sim.clock.seconds() + 0.5)
    sim.check()
    return sim


def _random_groups(rng: random.Random, ids: list[str]) -> list[list[str]]:
    shuffled = list(ids)
    rng.shuffle(shuffled)
    cut = rng.randint(1, len(ids) - 1)
    return [shuffled[:cut], shuffled[cut:]]


def _write_if_alive(sim: Sim, node_id: str) -> None:
    node = sim.nodes.get(node_id)
    if node is not None and node.alive:
        sim.write(node_id)


def _burst(sim: Sim, node_id: str, instances: int) -> None:
    """Writes spread over more instances than a deadline spans."""
    node = sim.nodes.get(node_id)
    if node is None or not node.alive:
        return
    for _ in range(2):
        sim.write(node_id)
    if instances > 0:
        sim.at(sim.clock.seconds() + 0.01, _burst, sim, node_id, instances - 1)


def _odd_slot(sim: Sim, node_id: str, name: str) -> None:
    node = sim.nodes.get(node_id)
    if node is not None and node.alive:
        sim.propose(node_id, mut.SET, f"/ctl/cal/{name}", b"odd-" + name.encode())


def _remove_if_alive(sim: Sim, node_id: str, member: str) -> None:
    node = sim.nodes.get(node_id)
    if node is not None and node.alive:
        sim.remove_member(node_id, member)


def _join(sim: Sim, node_id: str, crashed: list[str], remove: bool) -> None:
    live = sim.live()
    source = live[sim.rng.randrange(len(live))]
    sim.join(node_id, source.id)
    sim.add_member(node_id, node_id)
    if remove:
        for victim in crashed:
            if not sim.nodes[victim].alive:
                members = [n for n in live if n.seq.is_member()]
                if members:
                    sim.remove_member(members[0].id, victim)
                break


def odd_slot_claim(seed: int, n: int = 3) -> Sim:
    """A new node takes the CAL slot ``/ctl/cal/01`` beside ``/ctl/cal/1``
    (issue 15, failure 2), then writes go on. The store must refuse the odd
    name, so that ``M(s)`` never holds two members for one slot number,
    whose order would then follow the process's hash seed."""
    s = Sim(seed, n=n, alpha=4)
    s.net.loss = 0.01
    s.join("j0", "n0")
    s.propose("n0", mut.SET, "/ctl/cal/01", b"j0", 0)
    for _ in range(20):
        s.write(s.rng.choice(s.genesis + ["j0"]))
        s.run_until(s.clock.seconds() + 0.05)
    end = s.clock.seconds() + 10
    while s.clock.seconds() < end and not s.settled():
        s.run_until(s.clock.seconds() + 0.2)
    s.check()
    return s


def voting_gap(seed: int, n: int = 3) -> Sim:
    """Kills during a voting gap (issue 15, failure 3): one member dies and
    is removed, leaving ``m = n - 1`` (an even number); a new node takes a
    slot; a moment after its claim is applied (0.3-1 s, an idle cluster: no
    writes), ``m / 2`` more old members die. The old membership has lost
    its quorum; the new one (``m + 1``) keeps one only if the new member
    votes: the members must have skipped to the new membership within
    about a round trip of applying the claim, not after α writes. Then
    writes must commit."""
    rng = random.Random(seed ^ 0x6A9)
    sim = Sim(seed, n=n, alpha=rng.choice([4, 8, 50]), retain=1000)
    sim.net.loss = rng.choice([0.0, 0.01, 0.05])
    sim.net.dup = rng.choice([0.0, 0.05])
    sim.net.delay = (0.0002, rng.choice([0.002, 0.01]))
    dead = sim.genesis[-1:]
    for victim in dead:
        sim.crash(victim)
        sim.remove_member(sim.genesis[0], victim)
    _run_while(sim, lambda: any(v in node.replica.store.cal() for node in sim.live() for v in dead), 20)
    _run_while(sim, lambda: not all(node.seq.is_member() for node in sim.live()), 20)
    sim.run_until(sim.clock.seconds() + rng.uniform(0, 1.0))
    joiner = sim.join("j0", sim.genesis[0])
    sim.add_member("j0", "j0")
    _run_while(sim, lambda: "j0" not in sim.nodes[sim.genesis[1]].replica.store.cal(), 20)
    sim.run_until(sim.clock.seconds() + rng.uniform(0.3, 1.0))
    for victim in sim.genesis[1 : 1 + (n - 1) // 2]:
        sim.crash(victim)
    for _ in range(5):
        sim.write(rng.choice([sim.genesis[0], joiner.id]))
    end = sim.clock.seconds() + 20
    while sim.clock.seconds() < end and not sim.settled():
        sim.run_until(sim.clock.seconds() + 0.5)
    sim.check()
    return sim


def _run_while(sim: Sim, condition: Any, seconds: float) -> None:
    end = sim.clock.seconds() + seconds
    while condition() and sim.clock.seconds() < end:
        sim.run_until(sim.clock.seconds() + 0.05)
    if condition():
        sim.fail("a scripted step did not happen in time")


def durable_scenario(
    seed: int, n: int, duration: float = 2.0, recover: float = 20.0,
    unsafe: frozenset = frozenset(), bundle: bool = False,
) -> Sim:
    """Durable nodes (CONSENSUS.md §D) that crash and restart under their id.

    Writes go on under loss, duplication, reordering and a partition or
    none, while one to five crashes hit one node, a majority or the whole
    cluster at once; each victim restarts 1 ms-0.5 s later from its
    durable records only (what was not fsynced is lost; a batch being
    written is kept or lost whole), with its incarnation bumped. fsync
    takes a random time (group commit: what arrives meanwhile goes in the
    next batch). Nodes now and then snapshot their store and raise their
    floor, dropping acceptor records below it (D7); small logs (``retain``)
    make restarted nodes install snapshots. After the faults, writes go on
    until every live node has applied past the last acknowledged write, so
    that instances decided before a whole-cluster crash are decided again
    from the durable votes, and the checks compare them with the first
    decisions: agreement on chosen values, every acknowledged write still in
    the log at its seqn, no request in two instances, no request id for two
    requests.
    """
    rng = random.Random(seed ^ 0xD15C)
    alpha = rng.choice([2, 3, 4, 8, 50])
    sim = Sim(
        seed, n=n, alpha=alpha, retain=rng.choice([8, 40, 1000]), bundle=bundle,
        durable=True, unsafe=unsafe,
        fsync=(0.0002, rng.choice([0.001, 0.005, 0.02, 0.05])),
    )
    sim.net.loss = rng.choice([0.0, 0.0, 0.05, 0.2])
    sim.net.dup = rng.choice([0.0, 0.05, 0.2])
    sim.net.delay = (0.0002, rng.choice([0.002, 0.01, 0.05]))
    ids = list(sim.genesis)
    for _ in range(rng.randint(10, 40)):
        sim.at(rng.uniform(0, duration), _write_if_alive, sim, rng.choice(ids))
    if rng.random() < 0.3:
        start = rng.uniform(0, duration)
        sim.at(start, sim.partition, _random_groups(rng, ids) if n > 1 else [ids])
        sim.at(start + rng.uniform(0.05, 1.0), sim.heal)
    for _ in range(rng.randint(1, 5)):
        when = rng.uniform(0, duration)
        r = rng.random()
        if r < 0.3:
            victims = ids  # the whole cluster
        elif r < 0.5:
            victims = rng.sample(ids, n // 2 + 1)  # a majority
        else:
            victims = [rng.choice(ids)]
        down = rng.choice([0.001, 0.02, 0.2, 0.5]) * rng.random()
        for victim in victims:
            sim.at(when, sim.crash, victim)
            sim.at(when + down, _restart_if_down, sim, victim)
    for _ in range(rng.randint(0, 4)):
        sim.at(rng.uniform(0, duration), sim.snapshot_and_collect, rng.choice(ids))
    if rng.random() < 0.3:  # a crash right after a send (what was sent must be durable)
        kind = rng.choice([messages.Promise, messages.Accepted, messages.Accept, messages.Skip, messages.Nack])
        sim.at(rng.uniform(0, duration), _arm, sim, rng.choice(ids), kind, rng.uniform(0.001, 0.2))
    if rng.random() < 0.5:  # periodic snapshots, as a node with a data dir takes them
        period = rng.uniform(0.05, 0.3)
        for node_id in ids:
            t = rng.uniform(0, period)
            while t < duration:
                sim.at(t, sim.snapshot_and_collect, node_id)
                t += period
    sim.run_until(duration + 0.6)
    for node_id in ids:
        _restart_if_down(sim, node_id)
    sim.heal()
    sim.net.loss = min(sim.net.loss, 0.05)
    end = duration + recover
    acked = max((s for node in sim.nodes.values() for s in node.acked.values()), default=0)
    for node_id in ids:
        sim.write(node_id)  # move the log on past everything accepted before
    while sim.clock.seconds() < end and (
        not sim.settled() or min(node.last for node in sim.live()) < acked
    ):
        sim.run_until(sim.clock.seconds() + 0.5)
        if sim.settled() and min(node.last for node in sim.live()) < acked:
            sim.write(rng.choice(ids))
    low = {node.id: node.last for node in sim.live() if node.last < acked}
    if low:
        sim.fail(f"live nodes never applied up to the last acknowledged write at {acked}: {low}")
    sim.check()
    return sim


def _arm(sim: Sim, node_id: str, kind: type, down: float) -> None:
    sim.crash_after[node_id] = (kind, down)


def _restart_if_down(sim: Sim, node_id: str) -> None:
    if not sim.nodes[node_id].alive:
        sim.restart(node_id)


def promise_amnesia(seed: int, unsafe: frozenset = frozenset()) -> Sim:
    """D1's counterexample as a schedule: the owner n0 proposes while its
    messages reach nobody (one way: it still hears); the others decide
    later instances and revoke its turn; the acceptor that sends its PROMISE
    over the network crashes right after, and restarts 1-50 ms later, when
    the cut heals. Without D1 it forgot the promise, and the owner's
    retransmitted ACCEPT may reach it before the revoker's: the owner's
    value is chosen at ballot 0 and the revoker's no-op at ballot 1."""
    rng = random.Random(seed ^ 0xD1)
    sim = Sim(seed, n=3, alpha=4, retain=1000, durable=True, unsafe=unsafe,
              fsync=(0.0002, rng.choice([0.001, 0.005])))
    sim.net.delay = (0.0002, rng.choice([0.002, 0.01, 0.03]))
    sim.net.blocked = {("n0", "n1"), ("n0", "n2")}
    down = rng.uniform(0.001, 0.05)
    for node_id in ("n1", "n2"):
        sim.crash_after[node_id] = (messages.Promise, down)

    def healed(node_id: str) -> None:
        sim.crash_after.clear()
        sim.heal()

    sim.on_restart = healed
    sim.write("n0")
    for i in range(6):
        sim.at(0.01 + 0.05 * i, _write_if_alive, sim, rng.choice(["n1", "n2"]))
    sim.run_until(3.0)
    sim.heal()
    end = sim.clock.seconds() + 10
    while sim.clock.seconds() < end and not sim.settled():
        sim.run_until(sim.clock.seconds() + 0.5)
    sim.check()
    return sim
