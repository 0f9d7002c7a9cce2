"""A seeded lease simulation on whole nodes (tests/nodesim.py), checking the
lease guarantees of SPEC §9 in true (simulated) time.

Each seed builds a cluster of 3 (one seed in five: 5) real nodes whose
clocks run at rates drawn from ``[0.99, 1.01]``, grants a few leases of
1-3 s with files attached, and has their clients keep them alive through
random live nodes in their own ways: every ``ttl/3``; racing the deadline
(bursts sent about ``ttl × 1.00-1.045`` after the last send answered 200,
where the members' timers fire); for a while and then silent for good;
never; or until they revoke. Meanwhile the network loses datagrams and the
scenario partitions a minority (its keepalives fail, the majority's
succeed), cuts one way, pauses members (some for longer than the ttl: their
clocks jump when they wake), kills a member and starts a replacement (a
membership change while leases live), and leaves a member behind a short
log so that it catches up by installing a snapshot. Then it heals, the
clients fall silent and every lease must go.

What is checked, in the simulator's time (no node's clock):

- **G1**: no node applies the EXPIRE that ends a lease earlier than ``ttl``
  after the client *sent* the last grant or keepalive answered 200 (the
  answers may come after the end: all are checked at the end of the run).
- **G2**: every node live at the end applies the lease's end (from the log,
  or by installing a snapshot without it) by ``T0 + ttl × 1.02 + 2 s``, with
  ``T0`` the latest of: the client's last send of a grant or keepalive
  (whatever its answer: a RENEW sent may still be decided); the moment
  after the final heal when a quorum of the CAL's members had caught up
  (none needing a snapshot, each within α instances of the highest
  applied); and the moment that node itself had caught up. The final heal
  is when the last cut is mended and the last paused process wakes; no
  fault follows, so from it on a quorum of voting members is connected (a
  killed member's replacement may still wait for its slot: the others are
  a quorum). Until a member cut off or paused past the log kept has
  installed a snapshot it cannot vote, and a quorum may need its vote: a
  RENEW sent before the heal is then decided only after that install
  (seed 67), so the clock starts when the quorum can decide. Datagram loss
  goes on after the heal at the seed's rate (up to 3%).
- **G3**: on each node the EXPIRE or REVOKE that ends a lease deletes, at
  its one rev, every file ever attached to it that was there just before
  (each acknowledged attachment included), and ``/ctl/lease/<id>``.
- The node simulation's own invariants throughout (agreement, one log,
  no request applied twice, one ``M(s)``), and at the end
  :meth:`~nodesim.NodeSim.check_recovers` (every node a member again, a
  write commits at each, one seqn, acknowledged writes present).

The run also counts what makes the rules matter: EXPIREs decided after a
renewal replaced their basis (what L4 discards) and snapshot installs.
"""

from __future__ import annotations

import random
from typing import Any, Optional

from doozer.errors import DoozerError
from doozer.store import mutation
from doozer.store.lease_verbs import lease_path
import nodesim
from nodesim import NodeSim, SimNode

#: G2's bound is ``ttl × G2_FACTOR + G2_SLACK`` (SPEC §9; the product's own
#: margin, :data:`doozer.node.leases.DRIFT`, may not be what the SPEC says).
G2_FACTOR = 1.02
G2_SLACK = 2.0
#: How clients keep their leases (see the module docstring).
_ENDS = (bytes([mutation.EXPIRE]), bytes([mutation.REVOKE]))
STYLES = ("steady", "racer", "racer", "quitter", "silent", "revoker")


class Holder:
    """One lease's client: what it sent, what was answered 200, its files."""

    def __init__(self, ls: "LeaseSim", index: int, ttl: int, style: str) -> None:
        self.ls = ls
        self.index = index
        self.ttl = ttl
        self.style = style
        self.lease_id: Optional[str] = None
        self.grant_rev = 0
        #: sim times of the sends of the grant and keepalives answered 200
        self.answered: list[float] = []
        #: the last send of a grant or keepalive that reached a node
        self.last_send = 0.0
        self.files_tried: list[str] = []
        self.files_acked: list[str] = []
        self.done = False  # told NOENT, revoked, or silent for good
        self.revoked = False
        #: when a quitter or revoker stops
        self.stop_at = float("inf")

    def describe(self) -> str:
        return (f"lease {self.index} {self.lease_id} ttl {self.ttl} {self.style}: "
                f"answered {[round(t, 4) for t in self.answered[-4:]]} last send {self.last_send:.4f}")


class LeaseSim:
    """One seeded run (see the module docstring); :meth:`run` runs and checks it."""

    def __init__(self, seed: int, n: Optional[int] = None) -> None:
        self.seed = seed
        self.rng = rng = random.Random(seed ^ 0x1EA5E)
        self.n = n if n is not None else (5 if seed % 10 == 9 else 3)
        self.sim = sim = NodeSim(seed, self.n, drift=0.01, write_timeout=1.0,
                                 retain=rng.choice((None, 30, 30)), retain_seconds=0.0)
        if rng.random() < 0.5:  # clocks at the very edges of what SPEC §9 allows
            sim.rate_for = lambda: sim.rates.choice((0.99, 1.01))
        sim.on_spawn.append(self._watch)
        self.holders: list[Holder] = []
        self.by_id: dict[str, Holder] = {}
        #: lease id -> node -> (sim time, "expire" / "revoke" / "install", rev)
        self.ends: dict[str, dict[str, tuple[float, str, int]]] = {}
        self.stale_expires: set[tuple[str, int]] = set()  # (origin, request)
        self.healed_at = float("inf")
        #: after the final heal: when a quorum of members, and each node,
        #: had caught up (see :meth:`_note_caught_up`)
        self.quorum_at = float("inf")
        self.caught_up: dict[str, float] = {}
        self.loss = 0.0
        self._writes = 0
        self.writing = False

    # -- watching every node --------------------------------------------

    def _watch(self, sn: SimNode) -> None:
        sn.node.on_applied.append(lambda seqn, items, outcomes: self._applied(sn, items, outcomes))
        install = sn.node.install

        def installed(snap: Any) -> bool:
            done = install(snap)
            if done:
                self._installed(sn)
            return done

        sn.node.install = installed  # type: ignore[method-assign]

    def _applied(self, sn: SimNode, items: list, outcomes: list) -> None:
        for item, outcome in zip(items, outcomes):
            # A mutation is a msgpack array of 8 or 9 fields, its kind first:
            # skip the others undecoded (decoding every item was a tenth of
            # the run's time).
            if item[:1] in (b"\x98", b"\x99") and item[1:2] not in _ENDS:
                continue
            try:
                m = mutation.Mutation.decode(item)
            except ValueError:
                continue
            if m.kind not in (mutation.EXPIRE, mutation.REVOKE) or m.lease not in self.by_id:
                continue
            if outcome.error is None and outcome.took_rev:
                how = "expire" if m.kind == mutation.EXPIRE else "revoke"
                self._ended(sn, self.by_id[m.lease], how, outcome.rev)
            elif m.kind == mutation.EXPIRE and sn.node.store.leases.get(m.lease) is not None:
                self.stale_expires.add(m.key)

    def _installed(self, sn: SimNode) -> None:
        store = sn.node.store
        for lease_id, h in self.by_id.items():
            ends = self.ends.setdefault(lease_id, {})
            if sn.name not in ends and store.rev >= h.grant_rev and store.leases.get(lease_id) is None:
                ends[sn.name] = (self.sim.now, "install", store.rev)

    def _ended(self, sn: SimNode, h: Holder, how: str, rev: int) -> None:
        assert h.lease_id is not None
        ends = self.ends.setdefault(h.lease_id, {})
        if sn.name in ends and ends[sn.name][1] != "install":
            self.fail(f"{sn.name} ended lease {h.lease_id} twice")
        ends[sn.name] = (self.sim.now, how, rev)
        self._check_g3(sn, h, rev)

    def _check_g3(self, sn: SimNode, h: Holder, rev: int) -> None:
        """G3: at ``rev`` every file of the lease that was there at ``rev - 1``
        went, each acknowledged attachment was there until then, and so did
        ``/ctl/lease/<id>``."""
        assert h.lease_id is not None
        store = sn.node.store
        if store.oldest > rev - 1:
            return
        acked = set(h.files_acked) | {lease_path(h.lease_id)}
        for path in set(h.files_tried) | acked:
            before = _exists(store, path, rev - 1)
            if path in acked and not before:
                self.fail(f"G3: {path} of lease {h.lease_id} was gone on {sn.name} before its end at rev {rev}")
            if before and _exists(store, path, rev):
                self.fail(f"G3: {path} of lease {h.lease_id} outlived its end at rev {rev} on {sn.name}")

    def fail(self, why: str) -> None:
        self.sim.fail(why + "\n" + "\n".join(h.describe() for h in self.holders))

    # -- clients --------------------------------------------------------

    def _pick(self) -> Optional[SimNode]:
        """A random live node the client can reach (a paused or dead one
        times its connection out: no request)."""
        up = [s for s in self.sim.live() if not s.paused]
        return self.rng.choice(up) if up else None

    def grant(self, h: Holder) -> None:
        sn = self._pick()
        if sn is None or not sn.node.writable:
            self.sim.at(0.05, self.grant, h)
            return
        sent = self.sim.now
        h.last_send = sent

        def granted(result: tuple[str, int]) -> None:
            h.lease_id, h.grant_rev = result
            h.answered.append(sent)
            self.by_id[h.lease_id] = h
            for k in range(self.rng.randint(1, 2)):
                self.sim.at(self.rng.uniform(0, 0.1), self.attach, h, k)
            self.sim.at(self.rng.uniform(0.1, 0.3) * h.ttl, self.keepalive, h)

        sn.node.grant(h.ttl).addCallbacks(granted, lambda f: self.sim.at(0.05, self.grant, h))

    def attach(self, h: Holder, k: int) -> None:
        sn = self._pick()
        if h.done or sn is None or not sn.node.writable:
            return
        assert h.lease_id is not None
        path = f"/svc/{h.index}/{k}.{len(h.files_tried)}"
        h.files_tried.append(path)
        sn.node.set(path, b"me", lease=h.lease_id).addCallbacks(
            lambda rev: h.files_acked.append(path), lambda f: None)

    def keepalive(self, h: Holder) -> None:
        """Send one keepalive, then schedule the next as the style has it."""
        if h.done:
            return
        if self.sim.now >= h.stop_at:
            h.done = True
            if h.style == "revoker":
                self.revoke(h)
            return
        sn = self._pick()
        if sn is not None and sn.node.writable:
            assert h.lease_id is not None
            sent = self.sim.now
            h.last_send = sent

            def answered(ttl: int) -> None:
                h.answered.append(sent)

            def refused(f: Any) -> None:
                if isinstance(f.value, DoozerError) and f.value.code == "NOENT":
                    h.done = True

            try:
                sn.node.keepalive(h.lease_id).addCallbacks(answered, refused)
            except DoozerError:
                pass
        rng = self.rng
        last = max(h.answered)
        if h.style == "racer" and self.sim.now < last + 1.1 * h.ttl:
            if rng.random() < 0.7:  # a burst around the moment
                wait = rng.uniform(0.0, 0.012) * h.ttl
            else:
                wait = max(0.05 * h.ttl, last + h.ttl * rng.uniform(1.0, 1.045) - self.sim.now)
        else:  # every ttl/3 (a racer that lost the race: until it hears NOENT)
            wait = h.ttl / 3 * rng.uniform(0.8, 1.1)
        self.sim.at(wait, self.keepalive, h)

    def revoke(self, h: Holder) -> None:
        sn = self._pick()
        if sn is None or not sn.node.writable:
            return
        assert h.lease_id is not None

        def revoked(rev: int) -> None:
            h.revoked = True

        sn.node.revoke(h.lease_id).addCallbacks(revoked, lambda f: None)

    # -- a light write load (a laggard's log falls behind the short log kept) --

    def _write(self) -> None:
        if not self.writing:
            return
        sn = self._pick()
        if sn is not None:
            self._writes += 1
            self.sim.write(sn, f"/load/{self._writes % 8}")
        self.sim.at(self.rng.uniform(0.05, 0.2), self._write)

    # -- faults -----------------------------------------------------------

    def _fault(self) -> None:
        sim, rng = self.sim, self.rng
        minority = (self.n - 1) // 2
        members = sim.members() or sim.live()
        kind = rng.choice(("partition", "partition", "split", "pause", "pause", "oneway", "kill", "loss"))
        if kind == "kill" and len(sim.nodes) > self.n:
            kind = "pause"  # one membership change per run
        victims = rng.sample(members, rng.randint(1, min(minority, len(members))))
        seconds = rng.uniform(0.3, 3.5)  # below --timeout: nobody loses its slot
        if kind == "partition":
            sim.partition(victims)
        elif kind == "split":  # no quorum anywhere for a while
            sim.note("split: every node alone")
            sim.net.partition([[name] for name in sim.nodes], sim.nodes)
        elif kind == "pause":
            for v in victims:
                sim.pause(v, seconds)
        elif kind == "oneway" and len(members) >= 2:
            src, dest = rng.sample(members, 2)
            sim.one_way(src, dest)
        elif kind == "kill":
            nodesim._kill_and_replace(sim, rng, victims[:1])
            return
        elif kind == "loss":
            sim.net.loss = 0.3
            sim.run_for(seconds)
            sim.net.loss = self.loss
            return
        self.writing = True  # the others' log runs ahead of the cut-off ones
        self._write()
        sim.run_for(seconds)
        self.writing = False
        sim.heal()

    # -- the run ----------------------------------------------------------

    def run(self) -> "LeaseSim":
        sim, rng = self.sim, self.rng
        sim.start()
        end = sim.now + 20
        while not sim.healthy() and sim.now < end:
            sim.run_for(0.25)
        if not sim.healthy():
            sim.fail("the cluster did not form: " + sim.describe())
        self.loss = rng.choice((0.0, 0.01, 0.03))
        sim.net.loss = self.loss
        active = rng.uniform(2.5, 5.0)
        for i in range(rng.randint(2, 4)):
            h = Holder(self, i, rng.choice((1, 1, 2, 3)), rng.choice(STYLES))
            if h.style == "silent":
                h.stop_at = 0.0
            elif h.style in ("quitter", "revoker"):
                h.stop_at = sim.now + rng.uniform(0.5, active)
            self.holders.append(h)
            sim.at(rng.uniform(0.0, 0.5), self.grant, h)
        sim.run_for(0.6)
        phase_end = sim.now + active
        while sim.now < phase_end:
            sim.run_for(rng.uniform(0.0, 1.0))
            self._fault()
        sim.heal()
        self.healed_at = sim.now
        # Some clients go on a moment after the heal; then all are silent.
        for h in self.holders:
            h.stop_at = min(h.stop_at, sim.now + rng.choice((0.0, rng.uniform(0.0, 1.5))))
        quiet = sim.now + 1.6
        # Until every live node ended every lease, or the last G2 deadline.
        while sim.now < self.healed_at + 30:
            self._note_caught_up()
            if sim.now >= quiet:
                for h in self.holders:
                    h.done = True
                if self._all_ended() or sim.now > self._last_deadline():
                    break
            sim.run_for(0.05)
        if self.quorum_at == float("inf") and not self._all_ended():
            self.fail("no quorum of members caught up within 30 s of the heal" + sim.describe())
        self.check()
        # The node simulation's end check asks for one seqn everywhere at one
        # moment: on a clean network (a node's record written just then and
        # lost on its way to one node would fail it; seed 246).
        sim.net.loss = 0.0
        sim.check_recovers()
        return self

    # -- checks -----------------------------------------------------------

    def _all_ended(self) -> bool:
        live = [s.name for s in self.sim.live()]
        return all(h.lease_id is None or set(live) <= set(self.ends.get(h.lease_id, ()))
                   for h in self.holders)

    def _note_caught_up(self) -> None:
        """After the final heal: when each live node, and a quorum of the
        CAL's members, first had nothing to catch up on (no snapshot needed,
        within a window of the highest instance applied)."""
        sim = self.sim
        live = sim.live()
        top = max(s.node.applied_seqn for s in live)
        ready = {
            s.name for s in live
            if s.node.sequencer is not None and not s.node.sequencer.snapshot_needed
            and s.node.applied_seqn >= top - sim.alpha
        }
        for name in ready:
            self.caught_up.setdefault(name, sim.now)
        if self.quorum_at == float("inf"):
            cal = max(live, key=lambda s: s.node.applied_seqn).node.store.cal()
            if len(ready.intersection(cal)) > len(cal) // 2:
                self.quorum_at = sim.now

    def _g2_deadline(self, h: Holder, name: str) -> float:
        """G2's deadline for ``name`` (see the module docstring)."""
        start = max(h.last_send, self.quorum_at, self.caught_up.get(name, float("inf")))
        return start + h.ttl * G2_FACTOR + G2_SLACK

    def _last_deadline(self) -> float:
        live = [s.name for s in self.sim.live()]
        return max((self._g2_deadline(h, n) for h in self.holders for n in live), default=0.0)

    def check(self) -> None:
        live = [s.name for s in self.sim.live()]
        for h in self.holders:
            if h.lease_id is None:
                continue
            ends = self.ends.get(h.lease_id, {})
            logged = {name: e for name, e in ends.items() if e[1] != "install"}
            if len({(e[1], e[2]) for e in logged.values()}) > 1:
                self.fail(f"lease {h.lease_id} ended differently on different nodes: {logged}")
            # G1
            last = max(h.answered)
            for name, (at, how, rev) in logged.items():
                if how == "expire" and at < last + h.ttl:
                    self.fail(f"G1: {name} expired lease {h.lease_id} (ttl {h.ttl}) at {at:.4f}, "
                              f"{at - last:.4f} s after the send at {last:.4f} of its last keepalive answered 200")
            # G2
            for name in live:
                deadline = self._g2_deadline(h, name)
                at = ends.get(name, (float("inf"),))[0]
                if at > deadline:
                    self.fail(f"G2: {name} had not ended lease {h.lease_id} (ttl {h.ttl}) by {deadline:.4f} "
                              f"(T0 {deadline - h.ttl * G2_FACTOR - G2_SLACK:.4f}): {at:.4f}"
                              + self.sim.describe())

    def stats(self) -> dict[str, float]:
        """Counts for the record: keepalives and grants answered 200,
        stale EXPIREs decided, snapshot installs, how long after the final
        heal a quorum had caught up, and how many (lease, node) ends came
        later than G2 timed from the heal alone (``T0 = max(last send,
        heal)``, not waiting for the catch-up)."""
        late = 0
        live = [s.name for s in self.sim.live()]
        for h in self.holders:
            if h.lease_id is None:
                continue
            bound = max(h.last_send, self.healed_at) + h.ttl * G2_FACTOR + G2_SLACK
            ends = self.ends.get(h.lease_id, {})
            late += sum(1 for name in live if ends.get(name, (float("inf"),))[0] > bound)
        return {
            "answered": sum(len(h.answered) for h in self.holders),
            "stale_expires": len(self.stale_expires),
            "installs": self.sim.installs,
            "catch_up": self.quorum_at - self.healed_at,
            "late_from_heal": late,
        }


def _exists(store: Any, path: str, rev: int) -> bool:
    try:
        store.get(path, rev)
    except DoozerError as e:
        if e.code == "NOENT":
            return False
        raise
    return True


def scenario(seed: int, n: Optional[int] = None) -> LeaseSim:
    """Run and check one seed (raises :class:`nodesim.Violation`)."""
    return LeaseSim(seed, n).run()
