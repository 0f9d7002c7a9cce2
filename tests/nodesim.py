"""Whole nodes on a simulated network: real :class:`~doozer.node.Node`
objects (store, sequencer, membership chores, snapshot install), each on its
own :class:`~twisted.internet.task.Clock`, driven by one seeded generator.

:mod:`sim` drives bare sequencers with a fake store; this tier adds what the
node does around them, which the fault suite showed matters: members
removing silent members, new nodes claiming freed CAL slots, and a lagging
member fetching a snapshot the way :class:`doozer.server.service.NodeService` does
(from a random other CAL member, taken when asked, installed when it
arrives). A paused node (SIGSTOP) keeps its clock still and its datagrams
queued; on waking its clock jumps, as a real process's does.

Checks (:mod:`simcheck`, on the nodes' own state as they run): agreement
on chosen values and the acceptors' invariants, one log, no request applied
twice (by the product's bounded de-duplication record), one ``M(s)``
everywhere; and after healing every live node is a member, a write commits
at each, and all have applied the same seqn.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.internet.task import Clock

from doozer.server.config import Config
from doozer.consensus import messages
from doozer.errors import DoozerError
from doozer.node.fetcher import SnapshotFetcher
from doozer.node import build_node
from doozer.node.snapshot import Snapshot
from simcheck import Checker
from simnet import SimNet

NAME = "nodesim"
CLUSTER_ID = "nodesim-cluster"


class Violation(AssertionError):
    """An invariant does not hold (the message names the seed)."""


class SimNode:
    """One process: a node, its clock, and what it applied."""

    def __init__(self, sim: "NodeSim", name: str, port: int) -> None:
        self.name = name
        self.clock = Clock()
        self.clock.advance(sim.now)
        #: how fast this process's clock runs against true (the sim's) time:
        #: 1.0 unless the simulation draws drifting clocks (SPEC §9 allows
        #: rates off by up to 1%)
        self.rate = sim.draw_rate()
        #: the sim time up to which this clock has been advanced (a paused
        #: process's clock stands still, and jumps when it wakes)
        self.synced = sim.now
        config = Config(
            listen=("127.0.0.1", port),
            cluster=NAME,
            timeout=sim.timeout,
            write_timeout=sim.write_timeout,
            alpha=sim.alpha,
            pulse=1.0,
        )
        self.node = node = build_node(config, self.clock, name, rng=random.Random(sim.rng.random()))
        node.item_lifetime = max(sim.item_lifetime, 2 * sim.alpha)
        if sim.retain is not None:
            make = node._new_sequencer

            def new_sequencer(*args: Any, **kwargs: Any) -> Any:
                seq = make(*args, **kwargs)
                seq.retain = sim.retain  # a short log: laggards need snapshots sooner
                return seq

            node._new_sequencer = new_sequencer  # type: ignore[method-assign]
        if sim.retain_seconds is not None:
            node.retain_seconds = sim.retain_seconds  # before its sequencer is made
        node.peers.trust_outsiders = True  # a cluster with a key: non-members are nodes of it
        node._send = lambda dest, msg: sim.send(self, dest, msg)
        # The service's snapshot fetcher, over the simulated network.
        self.fetcher = SnapshotFetcher(node, lambda addr: sim.fetch(self, addr), self.address_of, self.clock)
        node.on_chores.append(lambda: sim.chores(self))
        self.alive = True
        self.paused = False
        self.held: list[tuple[str, bytes]] = []  # datagrams queued while paused
        # The transport's address book: records from the store (never
        # forgotten), else where a sender's datagrams came from.
        self.addresses: dict[str, str] = {}
        self.learned: dict[str, str] = {}
        real_pump = node._pump
        node.on_applied.append(lambda seqn, items, outcomes: sim.record(self, seqn, items, outcomes))

        def pump() -> None:
            if node.sequencer is not None:
                sim.checker.observe(self.name, node.sequencer)
            real_pump()

        node._pump = pump  # type: ignore[method-assign]


    def address_of(self, node_id: str) -> Optional[str]:
        return self.addresses.get(node_id) or self.learned.get(node_id)

    # -- this process's clock against true time --------------------------

    def time_of(self, local: float) -> float:
        """The sim time at which this clock will read ``local``."""
        if self.rate == 1.0:
            return local
        return self.synced + (local - self.clock.seconds()) / self.rate

    def advance_to(self, t: float) -> None:
        """Run this clock on to sim time ``t`` (at its rate); its next call,
        if it is due by ``t`` by :meth:`time_of`, fires even when rounding
        would leave the clock a hair short of it."""
        clock = self.clock
        if self.rate == 1.0:
            amount = t - clock.seconds()
        else:
            local = clock.seconds() + (t - self.synced) * self.rate
            if clock.calls:
                first = clock.calls[0].getTime()
                if self.time_of(first) <= t:
                    local = max(local, first)
            amount = max(0.0, local - clock.seconds())
        self.synced = t
        # A Clock keeps its calls sorted (nothing here resets one): with none
        # due, moving its time is all advance() would do.
        if clock.calls and clock.calls[0].getTime() <= clock.rightNow + amount:
            clock.advance(amount)
        else:
            clock.rightNow += amount


class NodeSim:
    """A seeded cluster of real nodes.

    :param seed: the one seed (network, scenario and every node's rng).
    :param n: CAL slots (members when healthy).
    :param retain_seconds: the nodes' log retention by time (None: the
        product's default).
    :param retain: decided values each node keeps at least (None: the
        sequencer's default of 1,000).
    :param drift: each process's clock runs at a rate drawn uniformly from
        ``[1 - drift, 1 + drift]`` (0: every clock keeps true time, and the
        seeded runs are those of before clock rates existed).
    """

    def __init__(self, seed: int, n: int = 3, *, alpha: int = 50, timeout: float = 4.0,
                 write_timeout: float = 2.0, item_lifetime: int = 1000,
                 retain_seconds: Optional[float] = None, retain: Optional[int] = None,
                 drift: float = 0.0) -> None:
        self.seed = seed
        self.n = n
        self.rng = random.Random(seed)
        self.alpha = alpha
        self.timeout = timeout
        self.write_timeout = write_timeout
        self.item_lifetime = item_lifetime
        self.retain_seconds = retain_seconds
        self.retain = retain
        self.drift = drift
        #: its own generator, so drawing rates leaves the others' draws alone
        self.rates = random.Random(seed ^ 0xC10C)
        #: set to choose each new process's clock rate (called with nothing)
        self.rate_for: Optional[Callable[[], float]] = None
        self.checker = Checker(self.fail)
        self.now = 0.0
        self.events = Clock()  # the scenario's own timeline
        #: the datagrams in flight (shared with tests/sim.py)
        self.net = SimNet(self.rng, (0.0002, 0.003))
        #: how long a snapshot takes to arrive after it was made (seconds):
        #: under load a real copy takes seconds (soak seed 15311: 2-5 s)
        self.fetch_delay = (0.005, 0.3)
        self.nodes: dict[str, SimNode] = {}
        self.by_addr: dict[str, SimNode] = {}
        self._ports = 1000
        self.installs = 0
        #: called with (src, dest, message) for every datagram sent (tests
        #: that must act at one exact message, e.g. cut a node off then)
        self.on_send: Optional[Callable[[SimNode, str, Any], None]] = None
        self.acks: list[tuple[int, str, bytes]] = []  # (rev, path, value)
        #: called with each new process (tests that watch every node)
        self.on_spawn: list[Callable[[SimNode], None]] = []
        self.trace: list[str] = []

    # -- processes -------------------------------------------------------

    def draw_rate(self) -> float:
        """A new process's clock rate (see ``drift`` and :attr:`rate_for`)."""
        if self.rate_for is not None:
            return self.rate_for()
        if not self.drift:
            return 1.0
        return self.rates.uniform(1.0 - self.drift, 1.0 + self.drift)

    def _spawn(self) -> SimNode:
        self._ports += 1
        name = f"N{len(self.nodes) + 1}"
        sn = SimNode(self, name, self._ports)
        self.nodes[name] = sn
        self.by_addr[sn.node.addr] = sn
        for hook in self.on_spawn:
            hook(sn)
        return sn

    def start(self) -> None:
        """The first node starts the cluster with free slots; the others
        copy its snapshot and claim them (as discovery has them do)."""
        first = self._spawn()
        first.node.start_genesis(empty_slots=self.n - 1, cluster_id=CLUSTER_ID)
        self.run_for(0.2)
        for _ in range(self.n - 1):
            self.join(first)

    def join(self, source: Optional[SimNode] = None, copy_seconds: float = 0.0) -> SimNode:
        """A new process copies ``source``'s snapshot (a random live member by
        default); the snapshot is made now and installed ``copy_seconds``
        later (discovery's copy; meanwhile the new node is in no cluster)."""
        if source is None:
            source = self.rng.choice([s for s in self.live() if s.node.member] or self.live())
        sn = self._spawn()
        snap = Snapshot.decode(source.node.snapshot().encode())
        self.note(f"{sn.name} joins from {source.name} at seqn {snap.seqn}")
        sn.learned[source.name] = source.node.addr  # discovery talked to it
        self._check_snapshot(sn, snap)
        if copy_seconds > 0:
            self.events.callLater(copy_seconds, self._joined, sn, snap)
        else:
            self._joined(sn, snap)
        return sn

    def _joined(self, sn: SimNode, snap: Snapshot) -> None:
        if not sn.alive:
            return
        sn.node.install(snap)
        sn.addresses.update(sn.node.info.node_addresses())  # the service, once joined
        sn.clock.advance(0)

    def kill(self, sn: SimNode) -> None:
        self.note(f"kill {sn.name}")
        sn.alive = False
        sn.node.stop()

    def pause(self, sn: SimNode, seconds: float) -> None:
        self.note(f"pause {sn.name} for {seconds:.2f} s")
        sn.paused = True
        self.events.callLater(seconds, self._resume, sn)

    def _resume(self, sn: SimNode) -> None:
        if not sn.paused:
            return  # healed already
        sn.paused = False
        if sn.alive:
            sn.advance_to(self.now)  # the clock jumps over the pause
            held, sn.held = sn.held, []
            for sender, data in held:
                self._deliver(sn, sender, data)

    def partition(self, side: list[SimNode]) -> None:
        names = {s.name for s in side}
        self.note(f"partition {sorted(names)}")
        self.net.partition([names, set(self.nodes) - names], self.nodes)

    def one_way(self, src: SimNode, dest: SimNode) -> None:
        """``dest`` stops hearing ``src``; ``src`` still hears ``dest``."""
        self.note(f"one-way loss {src.name} -> {dest.name}")
        self.net.one_way(src.name, dest.name)

    def heal(self) -> None:
        self.net.heal()
        for sn in self.live():
            if sn.paused:
                self._resume(sn)

    def live(self) -> list[SimNode]:
        return [s for s in self.nodes.values() if s.alive]

    def members(self) -> list[SimNode]:
        return [s for s in self.live() if s.node.member]

    def note(self, what: str) -> None:
        self.trace.append(f"[{self.now:8.3f}] {what}")

    def fail(self, why: str) -> None:
        tail = "\n".join(self.trace[-25:])
        raise Violation(f"seed {self.seed}: {why}\n{tail}")

    # -- the service around a node ------------------------------------------

    def chores(self, sn: SimNode) -> None:
        """What :meth:`doozer.server.service.NodeService._chores` does: refresh the
        address book from the store, and run the snapshot fetcher."""
        sn.addresses.update(sn.node.info.node_addresses())
        sn.fetcher.chores()

    def fetch(self, sn: SimNode, addr: str) -> "defer.Deferred[Snapshot]":
        """``GET /_peer/snapshot`` from the node at ``addr``: the snapshot is
        made when asked and arrives a moment later; a dead, stopped or
        unreachable source fails the fetch after a while."""
        d: defer.Deferred[Snapshot] = defer.Deferred()
        source = self.by_addr.get(addr)
        if source is None or not source.alive or source.paused or (sn.name, source.name) in self.net.blocked:
            self.events.callLater(0.5, self._fetched, sn, d, None)  # refused or timed out
            return d
        snap = Snapshot.decode(source.node.snapshot().encode())
        self._check_snapshot(sn, snap)
        self.events.callLater(self.rng.uniform(*self.fetch_delay), self._fetched, sn, d, snap)
        return d

    def _fetched(self, sn: SimNode, d: "defer.Deferred[Snapshot]", snap: Optional[Snapshot]) -> None:
        if snap is None or not sn.alive or sn.paused:
            d.errback(ConnectionError("the source did not answer"))
            return
        seqn = sn.node.applied_seqn
        d.callback(snap)
        if sn.node.applied_seqn != seqn:
            self.note(f"{sn.name} installs seqn {snap.seqn} (snapshot_needed)")
            self.installs += 1
        sn.clock.advance(0)

    def _check_snapshot(self, sn: SimNode, snap: Snapshot) -> None:
        for s, m in snap.members.items():
            self.checker.membership(f"snapshot for {sn.name}", s, m)

    def record(self, sn: SimNode, seqn: int, items: list, outcomes: list) -> None:
        checker = self.checker
        checker.handed_out(sn.name, seqn, items)
        checker.applied(sn.name, seqn, outcomes)
        seq = sn.node.sequencer
        checker.membership(sn.name, seqn + seq.alpha, seq.members(seqn + seq.alpha))

    # -- network -----------------------------------------------------------

    def send(self, src: SimNode, dest: str, message: Any) -> None:
        """The transport: a datagram to the address known for ``dest``."""
        if not src.alive or src.paused:
            return
        if self.on_send is not None:
            self.on_send(src, dest, message)
        addr = src.address_of(dest)
        if addr is None:
            return  # the transport drops it ("no_address")
        data = messages.pack(NAME, CLUSTER_ID, src.name, self.net.sent + 1, message)
        self.net.send(src.name, addr, data, self.now)

    def _receiver(self, addr: str) -> Optional[str]:
        """The name of the live node at ``addr`` (None: nobody listens)."""
        target = self.by_addr.get(addr)
        return target.name if target is not None and target.alive else None

    def _deliver(self, sn: SimNode, sender: str, data: bytes) -> None:
        if sn.paused:
            sn.held.append((sender, data))
            return
        if sender not in sn.addresses:
            sn.learned[sender] = self.nodes[sender].node.addr
        msg = messages.unpack(data).message
        for one in msg.messages if type(msg) is messages.Bundle else (msg,):
            sn.node.peers.receive(sender, one)

    # -- time -----------------------------------------------------------

    def _next_time(self) -> float:
        times = [self.net.next_time()]
        if self.events.calls:
            times.append(self.events.calls[0].getTime())
        for sn in self.live():
            if not sn.paused and sn.clock.calls:
                times.append(sn.time_of(sn.clock.calls[0].getTime()))  # kept sorted
        return min(times) if times else float("inf")

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until(self, end: float) -> None:
        while True:
            t = max(self._next_time(), self.now)
            if t > end:
                t = end
            self.now = t
            self.events.advance(t - self.events.seconds())
            for sn in self.live():
                if not sn.paused:
                    sn.advance_to(t)
            for src, addr, data in self.net.due(t, self._receiver):
                self._deliver(self.by_addr[addr], src, data)
            if t >= end:
                return

    def at(self, delay: float, fn: Callable, *args: Any) -> None:
        self.events.callLater(delay, fn, *args)

    # -- checks ------------------------------------------------------------

    def write(self, sn: SimNode, path: str) -> None:
        if not sn.alive or sn.paused or not sn.node.writable:
            return
        value = str(self.rng.random()).encode()
        d = sn.node.set(path, value)
        d.addCallbacks(self._acked, lambda f: None, callbackArgs=(path, value))

    def _acked(self, rev: int, path: str, value: bytes) -> None:
        self.acks.append((rev, path, value))

    def check_acks(self) -> None:
        """Every acknowledged write is in every live node's store at its rev
        (where the node's history still reaches back to it)."""
        for sn in self.live():
            store = sn.node.store
            for rev, path, value in self.acks:
                if rev < store.oldest:
                    continue
                try:
                    f = store.get(path, rev)
                except DoozerError as e:
                    self.fail(f"acknowledged write of {path} at rev {rev} missing on {sn.name}: {e}")
                if f.rev != rev or f.value != value:
                    self.fail(f"acknowledged write of {path} at rev {rev}: {sn.name} has rev {f.rev}")

    def healthy(self) -> bool:
        """Every live node is in every live node's CAL and votes, and none lags."""
        live = self.live()
        if not live:
            return False
        names = {s.name for s in live}
        top = max(s.node.applied_seqn for s in live)
        return all(
            s.node.sequencer is not None
            and set(s.node.store.cal()) == names
            and s.node.sequencer.is_member()
            and s.node.applied_seqn >= top - 5
            for s in live
        )

    def check_recovers(self, within: float = 60.0) -> None:
        """After healing: every live node a member, a write commits at each,
        and all apply the same seqn."""
        self.heal()
        deadline = self.now + within
        while self.now < deadline and not self.healthy():
            self.run_for(0.5)
        if not self.healthy():
            self.fail("not healthy after healing: " + self.describe())
        results: dict[str, Any] = {}
        for sn in self.live():
            d = sn.node.nop()
            d.addBoth(lambda r, name=sn.name: results.__setitem__(name, r))
        end = self.now + 2 * self.write_timeout + 1
        while self.now < end and len(results) < len(self.live()):
            self.run_for(0.1)
        bad = {k: v for k, v in results.items() if not isinstance(v, int)}
        if bad or len(results) < len(self.live()):
            self.fail(f"writes did not commit after healing: {bad} " + self.describe())
        self.run_for(2.0)
        seqns = {s.name: s.node.applied_seqn for s in self.live()}
        if len(set(seqns.values())) != 1:
            self.fail(f"live nodes did not converge: {seqns}")
        self.check_acks()

    def describe(self) -> str:
        parts = []
        for sn in self.live():
            seq = sn.node.sequencer
            st = seq.debug_state(3) if seq is not None else {}
            parts.append(
                f"\n  {sn.name} member={sn.node.member} applied={sn.node.applied_seqn} "
                f"cal={sn.node.store.cal()} next_out={st.get('next_out')} window={st.get('window')} "
                f"members={st.get('members')} queued={st.get('queued')} inflight={st.get('inflight')} "
                f"blocked={st.get('blocked')!r} open={st.get('open')}"
            )
        return "".join(parts)


class Load:
    """Closed-loop writers, ``clients`` on each live node (nodes that start
    later included): each writes again as soon as its last write is
    answered, like the fault suite's unpaced ``--fast`` workload; a node
    that does not take writes (not a member, paused) is tried again a
    moment later. Acknowledged writes go to ``sim.acks``."""

    def __init__(self, sim: NodeSim, clients: int = 1) -> None:
        self.sim = sim
        self.clients = clients
        self.running = False
        self.acked = 0
        self._writers: set[str] = set()
        self._n = 0

    def start(self) -> None:
        self.running = True
        self._add_writers()

    def stop(self) -> None:
        self.running = False

    def _add_writers(self) -> None:
        if not self.running:
            return
        for sn in self.sim.live():
            if sn.name not in self._writers:
                self._writers.add(sn.name)
                for k in range(self.clients):
                    self._write(sn, k)
        self.sim.at(0.25, self._add_writers)

    def _write(self, sn: SimNode, k: int) -> None:
        if not self.running or not sn.alive:
            return
        if sn.paused or not sn.node.writable:
            self.sim.at(0.05, self._write, sn, k)
            return
        self._n += 1
        path, value = f"/load/{sn.name}/{k}", str(self._n).encode()
        try:
            d = sn.node.set(path, value)
        except DoozerError:
            self.sim.at(0.05, self._write, sn, k)
            return

        def done(result: object) -> None:
            if isinstance(result, int):
                self.acked += 1
                self.sim.acks.append((result, path, value))
            self.sim.at(0, self._write, sn, k)

        d.addBoth(done)


def write_rate(seed: int, kill: bool, clients: int = 8, seconds: float = 4.0) -> float:
    """Writes committed per simulated second by ``clients`` closed-loop
    writers on each live node of 3, healthy or with one member killed and
    still in its slot (``--timeout`` 60)."""
    sim = NodeSim(seed, 3, timeout=60)
    sim.start()
    sim.run_for(3)
    if kill:
        sim.kill(sim.nodes["N3"])
    acked = [0]

    def issue(sn: SimNode, k: int) -> None:
        if not sn.node.writable:
            return
        d = sn.node.set(f"/load/{sn.name}/{k}", b"x" * 100)

        def done(result: object) -> None:
            if isinstance(result, int):
                acked[0] += 1
            sim.at(0, issue, sn, k)

        d.addBoth(done)

    for sn in sim.live():
        for k in range(clients):
            issue(sn, k)
    sim.run_for(seconds)
    return acked[0] / seconds



def _kill_and_replace(sim: NodeSim, rng: random.Random, victims: list) -> None:
    """Kill ``victims``, then start as many new nodes a moment later."""
    for v in victims:
        sim.kill(v)
    sim.run_for(rng.uniform(0.0, 2.0))
    for _ in victims:
        sim.join()


def _kill_in_the_voting_gap(sim: NodeSim, rng: random.Random, victim: SimNode) -> None:
    """Kill ``victim`` and start a replacement; 0.05-0.5 s after the
    replacement's claim is applied, kill another old member and replace it
    too (the fault suite's ``claimkill``)."""
    sim.kill(victim)
    new = sim.join()
    end = sim.now + 3 * sim.timeout
    while not new.node.member and sim.now < end:
        sim.run_for(0.01)
    sim.run_for(rng.uniform(0.05, 0.5))
    others = [m for m in sim.members() if m is not new]
    if others:
        sim.note(f"{new.name} claimed its slot: killing another member")
        _kill_and_replace(sim, rng, [rng.choice(others)])


def scenario(seed: int, n: int = 3, duration: float = 40.0) -> NodeSim:
    """Writes under random faults like the fault suite's nemesis: kill and
    replace, a kill right after a replacement's claim, pause, partition of
    a minority, one-way loss, a slow network, with load; then heal and
    check."""
    # Logs kept 30 s (the product's), 3 s, or only 1,000 instances: the
    # shorter ones make faults of a few seconds end in snapshot installs.
    sim = NodeSim(seed, n, retain_seconds=(None, 3.0, 0.0)[seed % 3])
    rng = random.Random(seed ^ 0xFA17)
    sim.start()
    sim.run_for(3.0)
    if not sim.healthy():
        sim.fail("the cluster did not form: " + sim.describe())
    t = sim.now
    minority = (n - 1) // 2
    while t < duration:
        kind = rng.choice(["kill", "pause", "partition", "slow", "oneway", "claimkill"])
        victims = rng.sample(sim.members() or sim.live(), max(1, rng.randint(1, minority)))
        if kind == "kill":
            _kill_and_replace(sim, rng, victims)
        elif kind == "claimkill":
            _kill_in_the_voting_gap(sim, rng, victims[0])
        elif kind == "pause":
            for v in victims:
                sim.pause(v, rng.uniform(0.5, sim.timeout + 4))
        elif kind == "partition":
            sim.partition(victims)
            sim.at(rng.uniform(0.5, sim.timeout + 4), sim.heal)
        elif kind == "oneway":
            members = sim.members() or sim.live()
            if len(members) >= 2:
                src, dest = rng.sample(members, 2)
                sim.one_way(src, dest)
                sim.at(rng.uniform(0.5, sim.timeout + 4), sim.heal)
                third = [m for m in members if m is not src and m is not dest]
                if third and rng.random() < 0.5:
                    sim.run_for(rng.uniform(0.0, sim.timeout))
                    _kill_and_replace(sim, rng, [rng.choice(third)])
        else:
            sim.net.delay = (0.0002, rng.choice([0.01, 0.05]))
            sim.at(rng.uniform(1, 4), setattr, sim, "delay", (0.0002, 0.003))
        end = sim.now + rng.uniform(2.0, 9.0)
        while sim.now < end:
            for _ in range(rng.randint(1, 8)):
                live = sim.live()
                sim.write(rng.choice(live), f"/k{rng.randrange(6)}")
            sim.run_for(0.02)
        sim.heal()
        sim.net.delay = (0.0002, 0.003)
        sim.check_recovers()
        t = sim.now
    return sim
