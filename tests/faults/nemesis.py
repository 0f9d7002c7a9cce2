"""The fault suite's nemesis: seeded faults on a running :class:`~tests.faults.cluster.Cluster`.

It kills members (``-9``) and replaces them through the freed CAL slots,
pauses them (SIGSTOP/SIGCONT), isolates them, makes one member deaf to
another that still hears it, briefly takes away the majority, kills a
second member just after a replacement claims its slot (``claimkill``),
and cuts a member off until it must install a snapshot (``snapshot``);
after each fault it heals and waits until the cluster is healthy again.
It notes every fault with its time, for the lease checker's fault windows.

In durable mode (a :class:`~tests.faults.cluster.Cluster` whose nodes have
data dirs) it also kills members and starts them again from their data
dirs: a minority (``restart``) or every member at once (``wholerestart``).
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import time
from collections import Counter
from typing import Any, Callable, Optional

from tests.faults.clients import WRITE_TIMEOUT, http_call
from tests.faults.cluster import TIMEOUT, Cluster

FAULT_KINDS = ("kill", "pause", "partition", "majority", "oneway", "claimkill", "snapshot")
#: Kinds that restart nodes from their data dirs: durable mode only.
RESTART_KINDS = ("restart", "wholerestart")
#: The default kinds of durable mode.
DURABLE_KINDS = FAULT_KINDS + RESTART_KINDS


def check_kinds(kinds: tuple, durable: bool) -> None:
    """Refuse unknown kinds, and restart kinds outside durable mode
    (ValueError saying which)."""
    for k in kinds:
        if k not in DURABLE_KINDS:
            raise ValueError(f"unknown fault kind {k!r}; choose from {', '.join(DURABLE_KINDS)}")
        if k in RESTART_KINDS and not durable:
            raise ValueError(f"fault kind {k!r} restarts nodes from their data dirs: "
                             "it needs durable mode (--data-dir)")
    if not kinds:
        raise ValueError("no fault kind given")

#: ``snapshot``: the longest cut. The member stays cut off until no other
#: member's log (``log_oldest`` in ``/_peer/consensus``) still holds its
#: next instance: peers keep at least the last 1,000 decided instances and
#: those of the last 30 s, so under load the cut lasts about 30 s.
SNAPSHOT_MAX_CUT = 120.0
#: ``claimkill``: the longest wait for the replacement to claim its slot.
CLAIM_WAIT = 60.0
#: ``claimkill``: the longest wait, after its claim, for the replacement to vote.
VOTE_WAIT = 10.0

class Nemesis:
    """Seeded faults, one at a time, each healed and settled before the next."""

    def __init__(self, cluster: Cluster, seed: int, log: Callable[[str], None],
                 kinds: tuple = FAULT_KINDS, path: Optional[str] = None, lose_log: bool = False) -> None:
        check_kinds(kinds, cluster.durable)
        if lose_log and not cluster.durable:
            raise ValueError("lose_log (a self-test of the checkers) needs durable mode")
        self.cluster = cluster
        #: CHECKER SELF-TEST ONLY: each restart deletes the node's log first
        self.lose_log = lose_log
        self.path = path  # the nemesis log, one JSON line per action
        self.rng = random.Random(f"{seed}-nemesis")
        self.log = log
        self.kinds = kinds
        self.counts: Counter = Counter()
        self.events: list[dict] = []
        self.unhealthy = 0
        #: per ``snapshot`` fault: installs by the member cut off
        self.snapshot_results: list[int] = []
        #: per node restarted from its data dir: whether it claimed a slot
        #: again before the cluster was healthy (it was back after --timeout)
        self.restart_claims: list[bool] = []
        self.t0 = time.monotonic()
        #: no fault going on: healthy since the last one (see :meth:`windows`)
        self.calm = True

    def note(self, kind: str, **what: Any) -> None:
        now = time.monotonic()  # also the clock of the recorded ops ("at")
        entry = {"t": round(now - self.t0, 2), "fault": kind, **what, "at": now}
        if kind == "healthy":
            self.calm = True
        elif kind not in ("heal", "snapshot-installed", "restart-claims"):
            self.calm = False
        self.events.append(entry)
        self.log("nemesis " + json.dumps(entry))
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def run(self, until: float) -> None:
        """Inject faults until the monotonic time ``until``."""
        rng = self.rng
        order = list(self.kinds)
        rng.shuffle(order)  # every kind early, then at random
        while time.monotonic() < until - 5:
            kind = order.pop(0) if order else rng.choice(self.kinds)
            after = getattr(self, "_" + kind)()  # a check to run once healthy, or None
            self.counts[kind] += 1
            self.cluster.heal()
            self.note("heal")
            if not self.cluster.wait_healthy(90):
                # A liveness failure: the cluster did not recover. Further
                # faults would tell nothing; end the run and check it.
                self.unhealthy += 1
                self.note("unhealthy", detail="not healthy 90 s after healing; ending the run")
                for tag in ("stalled-1", "stalled-2"):
                    self.log("consensus state saved in " + self.cluster.dump_consensus(tag))
                    time.sleep(3)
                return
            self.note("healthy", since=self.cluster.healthy_since)
            if after is not None:
                after()
            self._quiet(rng.uniform(1.0, 3.0), until)

    def windows(self) -> list[tuple[float, float]]:
        """When a fault was active or the cluster not yet healthy again:
        from a fault's first note to the start of the streak of healthy
        answers that ended it (``inf`` if none came), on the recorder's
        clock. In that streak every slot's node votes, the CAL is exactly
        them and a write commits: a quorum is connected."""
        out: list[tuple[float, float]] = []
        start: Optional[float] = None
        for e in self.events:
            if e["fault"] == "healthy":
                if start is not None:
                    out.append((start, e["since"]))
                start = None
            elif start is None and e["fault"] not in ("heal", "snapshot-installed", "restart-claims"):
                start = e["at"]
        if start is not None:
            out.append((start, float("inf")))
        return out

    def _quiet(self, seconds: float, until: float) -> None:
        time.sleep(max(0.0, min(seconds, until - time.monotonic())))

    @property
    def minority(self) -> int:
        return (self.cluster.n - 1) // 2

    def _kill(self) -> None:
        c = self.cluster
        slots = self.rng.sample(range(c.n), self.rng.randint(1, self.minority))
        self._kill_and_replace(slots)

    def _kill_and_replace(self, slots: list[int]) -> None:
        c = self.cluster
        for s in slots:
            self.note("kill", slot=s, addr=c.addr(s))
            c.slots[s].signal(signal.SIGKILL)
            c.slots[s].proc.wait(10)
        time.sleep(self.rng.uniform(0.0, 2.0))
        for s in slots:
            node = c.replace(s)
            self.note("replace", slot=s, addr=node.addr)

    def _restart(self) -> Callable[[], None]:
        """``kill -9`` 1 member (1-2 of 5), wait 0-2 s, start each again
        from its data dir: it comes back under its id, and votes again
        once caught up (if it is back after --timeout, its slot was
        emptied and it claims one again)."""
        slots = self.rng.sample(range(self.cluster.n), self.rng.randint(1, self.minority))
        return self._kill_and_restart(sorted(slots), "restart")

    def _wholerestart(self) -> Callable[[], None]:
        """``kill -9`` every member at once, wait 0-2 s, start them all
        again: every acknowledged write must be there, revs go on upwards."""
        return self._kill_and_restart(list(range(self.cluster.n)), "wholerestart")

    def _kill_and_restart(self, slots: list[int], kind: str) -> Callable[[], None]:
        """Returns the check run once healthy: which of them claimed a slot
        again meanwhile (``restart-claims``)."""
        c = self.cluster
        self.note(kind, slots=slots, addrs=[c.addr(s) for s in slots])
        for s in slots:  # at once: no waits between the kills
            c.slots[s].signal(signal.SIGKILL)
        for s in slots:
            c.kill(s)  # waits for each to be gone
        time.sleep(self.rng.uniform(0.0, 2.0))
        if self.lose_log:
            for s in slots:
                self.note("lose-log", slot=s, deleted=c.lose_log(s),
                          detail="CHECKER SELF-TEST: the log deleted before the restart")
        marks = {}
        for s in slots:
            marks[s] = len(c.slots[s].read_log())
            c.restart(s, wait=False)
        for s in slots:
            c.wait_up(s)
            self.note("restarted", slot=s, addr=c.addr(s))

        def claims() -> None:
            claimed = [s for s in slots if "claiming free CAL slot" in c.slots[s].read_log()[marks[s]:]]
            self.restart_claims.extend(s in claimed for s in slots)
            self.note("restart-claims", slots=slots, claimed=claimed)

        return claims

    def _pause(self) -> None:
        c = self.cluster
        slots = self.rng.sample(range(c.n), self.rng.randint(1, self.minority))
        # Sometimes longer than --timeout, so the member is removed and must
        # claim a free slot again after SIGCONT.
        hold = self.rng.uniform(0.5, TIMEOUT + 4)
        self.note("pause", slots=slots, seconds=round(hold, 2))
        for s in slots:
            c.slots[s].signal(signal.SIGSTOP)
            c.paused.add(s)
        time.sleep(hold)

    def _partition(self) -> None:
        c = self.cluster
        side = self.rng.sample(range(c.n), self.rng.randint(1, self.minority))
        hold = self.rng.uniform(0.5, TIMEOUT + 4)
        self._cut(side, hold, "partition")

    def _cut(self, side: list[int], hold: float, kind: str) -> None:
        c = self.cluster
        others = [i for i in range(c.n) if i not in side]
        self.note(kind, isolated=side, seconds=round(hold, 2))
        for i in side:
            c.set_blocked(i, [c.addr(j) for j in others])
        for j in others:
            c.set_blocked(j, [c.addr(i) for i in side])
        time.sleep(hold)

    def _oneway(self) -> None:
        """One member stops hearing another, which still hears it.

        Half the time a third member is killed (and replaced) meanwhile: the
        shape of the seed 2026 stall (docs/testing.md, bug 3), where the
        dead member's instances need a revocation, and a revocation needs
        messages both ways between the members left."""
        c = self.cluster
        deaf, unheard = self.rng.sample(range(c.n), 2)
        others = [i for i in range(c.n) if i not in (deaf, unheard)]
        victim = self.rng.choice(others) if self.rng.random() < 0.5 else None
        hold = self.rng.uniform(0.5, TIMEOUT + 4)
        self.note("oneway", deaf=deaf, unheard=unheard, seconds=round(hold, 2),
                  kill=victim)
        c.set_blocked(deaf, ["<" + c.addr(unheard)])
        end = time.monotonic() + hold
        if victim is not None:
            self._kill_and_replace([victim])
        time.sleep(max(0.0, end - time.monotonic()))

    def _claimkill(self) -> None:
        """Kill a member and start its replacement; as soon as the
        replacement has claimed the freed slot (``/v1/self`` says
        ``member``), wait for it to vote (``voting``: the members skip to
        the new membership at once, so this takes about a round trip), then
        kill another of the old members at once, and replace that one too.

        The claim-to-vote delay is logged: that is the voting gap, during
        which the cluster has the old membership's fault tolerance (it took
        ~10 s on an idle cluster before issue 15). A kill inside it can
        stop the cluster for good whatever the protocol does (the gap's
        instances proposed before the claim was applied need the old
        members' votes), so the step kills once the gap has closed: right
        after, not during. A replacement that does not vote within
        ``VOTE_WAIT`` s is logged as ``novote`` and killed into anyway (the
        health check then shows what it did). In a 5-node cluster 1 or 2
        are killed the second time, so that the replacement and the members
        left are still a quorum."""
        c = self.cluster
        first = self.rng.randrange(c.n)
        second = self.rng.sample([i for i in range(c.n) if i != first], self.rng.randint(1, self.minority))
        self.note("claimkill", first=first, then=second)
        self._kill_and_replace([first])
        node = c.slots[first]
        t0 = time.monotonic()
        me = self._self_until(node.addr, "member", t0 + CLAIM_WAIT)
        if me is None:
            self.note("unclaimed", slot=first, addr=node.addr, seconds=CLAIM_WAIT,
                      detail="the replacement did not claim a slot: no second kill")
            return
        claimed = time.monotonic()
        votes = self._self_until(node.addr, "voting", claimed + VOTE_WAIT)
        self.note("claimed", slot=first, addr=node.addr, seconds=round(claimed - t0, 2),
                  voting_after=round(time.monotonic() - claimed, 3))
        if votes is None:
            self.note("novote", slot=first, addr=node.addr, seconds=VOTE_WAIT)
        self._kill_and_replace(second)

    def _self_until(self, addr: str, field: str, deadline: float) -> Optional[dict]:
        """Poll ``/v1/self`` every 10 ms until ``field`` is true (its body),
        or None at ``deadline``."""
        while time.monotonic() < deadline:
            try:
                st, body = http_call(addr, "GET", "/v1/self", timeout=1)
                if st == 200 and isinstance(body, dict) and body.get(field):
                    return body
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.01)
        return None

    def _snapshot(self) -> Callable[[], None]:
        """Cut one member off (both ways) until no other member's log still
        holds the instance after its decided seqn (or ``SNAPSHOT_MAX_CUT``
        s), so that it must install a snapshot once healed. Returns the
        check run once the cluster is healthy again: how many snapshots
        that member installed."""
        c = self.cluster
        s = self.rng.randrange(c.n)
        others = [i for i in range(c.n) if i != s]
        node = c.slots[s]
        copies = node.read_log().count("copied cluster")
        mine = c.decided(s)
        self.note("snapshot", isolated=[s], addr=node.addr, decided=mine)
        c.set_blocked(s, [c.addr(j) for j in others])
        for j in others:
            c.set_blocked(j, [node.addr])
        t0 = time.monotonic()
        gap: Optional[int] = None
        reached = False
        while time.monotonic() - t0 < SNAPSHOT_MAX_CUT:
            time.sleep(0.2)
            now = c.decided(s)
            if now is not None:
                mine = now if mine is None else max(mine, now)
            views = [v for v in (c.consensus(j) for j in others) if v is not None]
            try:
                theirs = [int(v["decided"]) for v in views]
                oldest = [int(v["log_oldest"]) for v in views]
            except (KeyError, TypeError, ValueError):
                theirs, oldest = [], []
            if mine is not None and len(theirs) == len(others):
                gap = min(theirs) - mine
                if min(oldest) > mine + 1:
                    reached = True
                    break
            elif mine is None and not theirs and time.monotonic() - t0 > 10:
                break  # no node shows its consensus view: do not hold the cut for nothing
        self.note("snapshot-gap", slot=s, gap=gap, reached=reached,
                  seconds=round(time.monotonic() - t0, 2))

        def installed() -> None:
            n = node.read_log().count("copied cluster") - copies
            self.snapshot_results.append(n)
            self.note("snapshot-installed", slot=s, addr=node.addr, installs=n)

        return installed

    def _majority(self) -> None:
        """A short loss of the majority: writes must answer 503 (indeterminate)."""
        c = self.cluster
        hold = self.rng.uniform(WRITE_TIMEOUT + 0.5, TIMEOUT - 0.5)
        k = self.minority + 1
        slots = self.rng.sample(range(c.n), k)
        if self.rng.random() < 0.5:
            self.note("majority", how="pause", slots=slots, seconds=round(hold, 2))
            for s in slots:
                c.slots[s].signal(signal.SIGSTOP)
                c.paused.add(s)
            time.sleep(hold)
        else:
            # Every node cut off from every other.
            self.note("majority", how="partition", slots=list(range(c.n)), seconds=round(hold, 2))
            for i in range(c.n):
                c.set_blocked(i, [c.addr(j) for j in range(c.n) if j != i])
            time.sleep(hold)
