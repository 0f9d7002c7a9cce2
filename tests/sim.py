"""The one consensus simulator: N sans-I/O sequencers on a simulated network.

Everything is driven by one :class:`twisted.internet.task.Clock` and one
seeded :class:`random.Random` (shared by the network, the scenario and every
sequencer), so a seed replays exactly. Messages go through the real wire
format (:func:`doozer.consensus.messages.pack` / ``unpack``).

The network loses, duplicates, delays (hence reorders) and partitions
messages; nodes crash (for good: a restarted process has a new id) and new
nodes join by :meth:`Sequencer.install` from a peer's snapshot, then become
members through a CAL item. Each node applies decided batches to a tiny
fake store: a CAL (items ``b"cal:add:X"`` / ``b"cal:del:X"``) and the set of
applied item ids (de-duplication, as the real store does by request id).

Invariants are checked as the run goes (agreement, contiguous logs, one
``M(s)`` everywhere) and at the end (acknowledged items are in the log,
progress after healing). A violation raises :class:`Violation`, whose message
names the seed so the run can be replayed.
"""

from __future__ import annotations

import heapq
import random
from typing import Optional

from twisted.internet.task import Clock

from doozer.consensus import messages
from doozer.consensus.sequencer import Sequencer

NAME = "sim"
CLUSTER_ID = "sim-cluster"


class Violation(AssertionError):
    """A consensus invariant does not hold."""


class SimNode:
    """One node: a sequencer plus the fake store it applies decisions to."""

    def __init__(self, node_id: str, seq: Sequencer, cal: list[str], last: int) -> None:
        self.id = node_id
        self.seq = seq
        self.alive = True
        self.cal = list(cal)
        self.last = last  # last applied seqn
        self.log: dict[int, tuple] = {}
        self.ids: set = set()
        self.cal_after: dict[int, tuple] = {}
        self.pending: dict[bytes, float] = {}  # proposed here, not yet applied
        self.acked: dict[bytes, int] = {}
        self.call = None
        self.call_at: Optional[float] = None
        self.paused_until = 0.0  # a SIGSTOPped process: no input handled


class Sim:
    """A seeded simulated cluster.

    :param seed: the seed of the one random generator.
    :param n: genesis members.
    :param alpha: membership delay (small, so CAL changes take effect).
    :param retain: decided values each node keeps (small, so laggards need
        snapshots).
    """

    def __init__(
        self,
        seed: int,
        n: int = 3,
        alpha: int = 4,
        fill: float = 0.1,
        retain: int = 40,
        bundle: bool = False,
    ) -> None:
        self.seed = seed
        # As the node does: everything one pump sends to a peer goes in one
        # Bundle datagram (lost, duplicated or delayed as a whole).
        self.bundle = bundle
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.alpha = alpha
        self.fill = fill
        self.retain = retain
        self.loss = 0.0
        self.dup = 0.0
        self.delay = (0.0005, 0.005)
        self.blocked: set = set()  # (src, dst) pairs that cannot talk
        self._heap: list = []
        self._seq = 0
        self._dirty: list[SimNode] = []
        self.nodes: dict[str, SimNode] = {}
        self.genesis = [f"n{i}" for i in range(n)]
        self.chosen: dict[int, tuple] = {}
        self.members: dict[int, tuple] = {}
        self.item_seqn: dict[bytes, int] = {}
        self.sent = 0
        self._writes = 0
        for node_id in self.genesis:
            self._add_node(node_id, genesis=self.genesis, cal=self.genesis, last=0)
        for s in range(1, alpha + 1):
            self.members[s] = tuple(self.genesis)

    # -- nodes -----------------------------------------------------------

    def _add_node(self, node_id: str, genesis: list, cal: list, last: int) -> SimNode:
        seq = Sequencer(
            node_id,
            genesis=genesis,
            alpha=self.alpha,
            fill=self.fill,
            rng=self.rng,
            retain=self.retain,
            now=self.clock.seconds(),
        )
        node = self.nodes[node_id] = SimNode(node_id, seq, cal, last)
        self._schedule(node)
        return node

    def fail(self, why: str) -> None:
        """Raise a :class:`Violation` naming the seed."""
        raise Violation(f"seed {self.seed}: {why}")

    def live(self) -> list[SimNode]:
        """The nodes that have not crashed, in id order."""
        return [n for n in self.nodes.values() if n.alive]

    def crash(self, node_id: str) -> None:
        """Stop a node for good; its in-memory state is lost."""
        node = self.nodes[node_id]
        node.alive = False
        if node.call is not None and node.call.active():
            node.call.cancel()
        node.pending.clear()

    def pause(self, node_id: str, duration: float) -> None:
        """Freeze a node (like SIGSTOP): it keeps its state, handles nothing,
        and on waking handles what queued up, with its stale view."""
        self.nodes[node_id].paused_until = self.clock.seconds() + duration

    def write(self, node_id: str, item: Optional[bytes] = None) -> bytes:
        """A client proposes a unique item at a node."""
        node = self.nodes[node_id]
        if item is None:
            self._writes += 1
            item = b"w:%s:%d" % (node_id.encode(), self._writes)
        node.pending[item] = self.clock.seconds()
        node.seq.propose(item, self.clock.seconds())
        self._mark(node)
        return item

    def join(self, node_id: str, source_id: str) -> SimNode:
        """A new node copies ``source``'s snapshot and follows the log."""
        node = self._add_node(node_id, genesis=[], cal=[], last=0)
        self.install(node, self.nodes[source_id])
        return node

    def install(self, node: SimNode, source: SimNode) -> None:
        """Give ``node`` the snapshot of ``source`` (store + the last α CALs)."""
        floor = source.last
        by_seqn = {}
        for s in range(floor - self.alpha + 1, floor + 1):
            cal = source.cal_after.get(s, tuple(self.genesis)) if s > 0 else tuple(self.genesis)
            by_seqn[s + self.alpha] = cal
        node.cal = list(source.cal)
        node.ids = set(source.ids)
        node.cal_after = dict(source.cal_after)
        node.last = floor
        for item in list(node.pending):
            if item in node.ids:
                node.acked[item] = self.item_seqn[item]
                del node.pending[item]
        node.seq.install(floor, by_seqn)
        self._mark(node)

    # -- the fake store ------------------------------------------------------

    def _apply(self, node: SimNode, seqn: int, items: list) -> None:
        if seqn != node.last + 1:
            self.fail(f"{node.id} handed out {seqn} after {node.last}")
        batch = tuple(items)
        known = self.chosen.setdefault(seqn, batch)
        if known != batch:
            self.fail(f"disagreement at {seqn}: {known!r} vs {node.id} {batch!r}")
        node.last = seqn
        node.log[seqn] = batch
        for item in items:
            if item in node.ids:
                continue  # de-duplicated, as the store does
            node.ids.add(item)
            first = self.item_seqn.setdefault(item, seqn)
            if first != seqn:
                self.fail(f"{item!r} applied at {seqn} on {node.id}, at {first} elsewhere")
            if item.startswith(b"cal:"):
                _, op, who = item.decode().split(":")
                if op == "add" and who not in node.cal:
                    node.cal.append(who)
                elif op == "del" and who in node.cal and len(node.cal) > 1:
                    node.cal.remove(who)
            if item in node.pending:
                del node.pending[item]
                node.acked[item] = seqn
        cal = tuple(node.cal)
        node.cal_after[seqn] = cal
        node.cal_after.pop(seqn - self.alpha - 1, None)
        target = seqn + self.alpha
        known_m = self.members.setdefault(target, cal)
        if known_m != cal:
            self.fail(f"M({target}) differs: {known_m} vs {node.id} {cal}")
        node.seq.set_members(target, cal)

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
        seq.tick(now)
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
        for seqn, items in seq.take_decided():
            self._apply(node, seqn, items)
        if seq.snapshot_needed:
            best = max(self.live(), key=lambda n: (n.last, n.id))
            if best.last > node.last:
                self.install(node, best)
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
        self.sent += 1
        if (src, dst) in self.blocked or dst not in self.nodes:
            return
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            return
        data = messages.pack(NAME, CLUSTER_ID, src, self.sent, msg)
        copies = 2 if self.dup and rng.random() < self.dup else 1
        now = self.clock.seconds()
        for _ in range(copies):
            self._seq += 1
            at = now + rng.uniform(*self.delay)
            heapq.heappush(self._heap, (at, self._seq, dst, data))

    def _deliver(self, dst: str, data: bytes) -> None:
        node = self.nodes[dst]
        if not node.alive:
            return
        if node.paused_until > self.clock.seconds():
            self._seq += 1
            heapq.heappush(self._heap, (node.paused_until, self._seq, dst, data))
            return
        env = messages.unpack(data)
        if (env.sender, dst) in self.blocked:
            return  # partitioned while in flight
        msg = env.message
        for one in msg.messages if isinstance(msg, messages.Bundle) else (msg,):
            node.seq.receive(env.sender, one, self.clock.seconds())
        self._mark(node)

    def _flush_dirty(self) -> None:
        while self._dirty:
            node = self._dirty.pop(0)
            self._pump(node)

    def run_until(self, end: float) -> None:
        """Advance simulated time to ``end``, delivering and ticking."""
        clock = self.clock
        heap = self._heap
        self._flush_dirty()
        while True:
            t_net = heap[0][0] if heap else float("inf")
            t_clk = clock.calls[0].getTime() if clock.calls else float("inf")
            t = min(t_net, t_clk)
            if t > end:
                clock.advance(max(0.0, end - clock.seconds()))
                self._flush_dirty()
                return
            clock.advance(max(0.0, t - clock.seconds()))
            while heap and heap[0][0] <= t:
                _, _, dst, data = heapq.heappop(heap)
                self._deliver(dst, data)
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
        self.blocked = set()
        side = {n: i for i, g in enumerate(groups) for n in g}
        for a in self.nodes:
            for b in self.nodes:
                if a != b and side.get(a, -1) != side.get(b, -2):
                    self.blocked.add((a, b))

    def heal(self) -> None:
        """Everyone can talk again."""
        self.blocked = set()

    # -- checks ------------------------------------------------------------

    def settled(self) -> bool:
        """All live nodes applied the same log and nothing is pending."""
        live = self.live()
        lasts = {n.last for n in live}
        return len(lasts) == 1 and not any(n.pending for n in live)

    def check(self) -> None:
        """The end-of-run invariants (the running ones are checked on apply)."""
        for node in self.nodes.values():
            for item, seqn in node.acked.items():
                if item not in self.chosen.get(seqn, ()):
                    self.fail(f"acknowledged {item!r} not in the log at {seqn}")
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

    One run in ten adds 50-200 more writes; in runs without crashes, one in
    five demotes a live member (``cal:del``), which then writes as a non-member. Faults (each chosen by the seed): loss, duplication, delay spread
    (reordering), partitions, pauses (SIGSTOP-like), crashes of up to ``(n - 1) // 2`` genesis
    members (for good), and up to one new node joining by snapshot and being
    added to the CAL, after which a crashed member may be removed. With
    ``bundle`` each pump's messages for one peer travel in one ``Bundle``, as
    the node sends them.
    """
    rng = random.Random(seed ^ 0x5EED)  # scenario shape only; the run uses sim.rng
    sim = Sim(
        seed, n=n, alpha=rng.choice([2, 3, 4, 8, 50]), retain=rng.choice([8, 40, 1000]),
        bundle=bundle,
    )
    sim.loss = rng.choice([0.0, 0.0, 0.05, 0.2, 0.35])
    sim.dup = rng.choice([0.0, 0.05, 0.2])
    sim.delay = (0.0002, rng.choice([0.002, 0.01, 0.05]))
    ids = list(sim.genesis)
    for _ in range(rng.randint(5, 30)):
        sim.at(rng.uniform(0, duration), _write_if_alive, sim, rng.choice(ids))
    for _ in range(rng.randint(0, 3)):
        start = rng.uniform(0, duration)
        groups = _random_groups(rng, ids)
        sim.at(start, sim.partition, groups)
        sim.at(start + rng.uniform(0.05, 1.0), sim.heal)
    for _ in range(rng.randint(0, 2)):
        sim.at(rng.uniform(0, duration), sim.pause, rng.choice(ids), rng.uniform(0.05, 1.5))
    crashed = rng.sample(ids, rng.randint(0, (n - 1) // 2))
    for victim in crashed:
        sim.at(rng.uniform(0, duration), sim.crash, victim)
    if rng.random() < 0.5:
        when = rng.uniform(0, duration)
        sim.at(when, _join, sim, "j0", crashed, rng.random() < 0.5)
        for _ in range(rng.randint(0, 5)):
            sim.at(rng.uniform(when + 0.01, duration + 0.01), _write_if_alive, sim, "j0")
    if rng.random() < 0.1:  # heavy load: pipelining, batching, full windows
        for _ in range(rng.randint(50, 200)):
            sim.at(rng.uniform(0, duration), _write_if_alive, sim, rng.choice(ids))
    if not crashed and rng.random() < 0.2:
        # Demote a live member (as liveness removal would): it must go on
        # as a non-member, forwarding its writes.
        victim = rng.choice(ids)
        when = rng.uniform(0, duration)
        sim.at(when, _write_if_alive, sim, rng.choice([i for i in ids if i != victim]),
               f"cal:del:{victim}".encode())
        for _ in range(rng.randint(1, 5)):
            sim.at(rng.uniform(when, duration + 0.5), _write_if_alive, sim, victim)
    sim.run_until(duration)
    sim.heal()
    sim.loss = min(sim.loss, 0.05)
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


def _write_if_alive(sim: Sim, node_id: str, item: Optional[bytes] = None) -> None:
    node = sim.nodes.get(node_id)
    if node is not None and node.alive:
        sim.write(node_id, item)


def _join(sim: Sim, node_id: str, crashed: list[str], remove: bool) -> None:
    live = sim.live()
    source = live[sim.rng.randrange(len(live))]
    sim.join(node_id, source.id)
    sim.write(node_id, f"cal:add:{node_id}".encode())
    if remove:
        for victim in crashed:
            if not sim.nodes[victim].alive:
                members = [n for n in live if n.seq.is_member()]
                if members:
                    sim.write(members[0].id, f"cal:del:{victim}".encode())
                break
