"""The fault suite on real clusters (issue 7): workers, a nemesis, the checkers.

Starts a 3- or 5-node cluster of real ``twistd -n doozer`` processes on
127.0.0.1, runs client workers against every node (set, CAS, delete,
``consistent=1`` reads, and long-running watch streams that resume from
``next``), while a seeded nemesis kills members (``-9``) and replaces them with
new nodes through the freed CAL slots, pauses them (SIGSTOP/SIGCONT), isolates
them (the TEST-ONLY transport hook of :mod:`doozer.consensus.faults`), makes
one member deaf to another that still hears it, briefly takes away the
majority, kills a second member just after a replacement claims its slot
(``claimkill``), and cuts a member off until it must install a snapshot
(``snapshot``). At the end it heals everything, lets the
cluster settle, dumps every live node's event log through the watch API and
runs :func:`tests.faults.checker.check_history` on the whole record.

Lease holders (:mod:`tests.faults.leaseload`, ``--lease-holders``) contend
for an election key meanwhile; :mod:`tests.faults.leasecheck` judges them
(G1, G2, disjoint tenures) with the nemesis's fault windows.

With ``--fast`` the workload is :class:`tests.faults.fastload.FastWorkload`
(keep-alive connections, thousands of writes a second at ``--rate``) and the
node logs are followed during the run instead of dumped at the end.

Usage::

    python -m tests.faults.run --nodes 3 --seconds 60 --seed 1 --out history.jsonl
    python -m tests.faults.run --nodes 3 --seconds 60 --seed 1 --fast

Exit status: 0 the checkers passed, 1 a violation, 2 unknown (search budget),
3 the run itself failed (e.g. the cluster never formed).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from typing import Any, Callable, Optional

from tests.faults.checker import Verdict, check_history
from tests.faults.clients import CLIENT_TIMEOUT, WRITE_TIMEOUT, ClientThreads, http_call, recorded_call
from tests.faults.fastload import FastWorkload
from tests.faults.history import CAS, DELETE, OK, READ, SET, WATCH, WRITES, Event, NodeLog, Recorder
from tests.faults.leaseload import LeaseWorkload
from tests.faults.leaseops import LeaseLog
from tests.procutil import NodeProcess, free_port

try:  # peers' endpoints (/_peer/...) take a token made with the cluster key
    from doozer.server.auth import make_token as _make_token
except ImportError:  # code before peer tokens: /_peer/ is open to clients
    _make_token = None

FAULT_KINDS = ("kill", "pause", "partition", "majority", "oneway", "claimkill", "snapshot")

#: Node options: short --timeout so silent members are replaced during the
#: run, and enough history to keep the whole run (the write timeout:
#: :data:`tests.faults.clients.WRITE_TIMEOUT`).
TIMEOUT = 4.0
HIST = 1_000_000
#: With ``--fast`` the runner follows the node logs during the run, so a
#: node keeps less (about a minute at the fast rate): a snapshot carries
#: the history it keeps, and one of millions of revs would take seconds
#: to build and to load.
FAST_HIST = 200_000
#: ``snapshot``: the longest cut. The member stays cut off until no other
#: member's log (``log_oldest`` in ``/_peer/consensus``) still holds its
#: next instance: peers keep at least the last 1,000 decided instances and
#: those of the last 30 s, so under load the cut lasts about 30 s.
SNAPSHOT_MAX_CUT = 120.0
#: ``claimkill``: the longest wait for the replacement to claim its slot.
CLAIM_WAIT = 60.0
#: ``claimkill``: the longest wait, after its claim, for the replacement to vote.
VOTE_WAIT = 10.0
#: Default target writes per second of ``--fast`` (0: unpaced, as fast as the
#: answers come), and clients per node.
FAST_RATE = 0
FAST_CLIENTS = 8
#: Lease holders contending for the election key (tests/faults/leaseload.py).
LEASE_HOLDERS = 4
#: Seconds the cluster must stay healthy after a heal before the next fault.
STABLE = 2.0
WATCH_WAIT = 2  # the watch's own ``timeout`` argument


class Cluster:
    """The nodes of one run, by slot (a replaced node takes its slot)."""

    def __init__(self, n: int, workdir: str, name: str, log: Callable[[str], None],
                 hist: int = HIST) -> None:
        self.n = n
        self.hist = hist
        self.workdir = workdir
        self.name = name
        self.log = log
        self.slots: list[NodeProcess] = []
        self.all: list[NodeProcess] = []  # every process started, for cleanup
        self.paused: set[int] = set()
        #: when the streak of healthy answers that ended the last
        #: :meth:`wait_healthy` began (before its first check was sent)
        self.healthy_since = 0.0
        self._gen = 0
        self.lock = threading.Lock()
        # One cluster key for every node (SPEC §5: a node with --peers
        # needs one).
        self.key_file = os.path.join(workdir, "cluster.key")
        if not os.path.exists(self.key_file):
            with open(self.key_file, "wb") as f:
                f.write(base64.b64encode(os.urandom(32)) + b"\n")

    # -- processes -------------------------------------------------------

    def _new(self, port: int, peers: list[str]) -> NodeProcess:
        self._gen += 1
        wd = os.path.join(self.workdir, f"node{self._gen}-{port}")
        os.makedirs(wd, exist_ok=True)
        ffile = os.path.join(wd, "faults.json")
        with open(ffile, "w") as f:
            f.write("[]")
        node = NodeProcess(
            wd,
            "--peers", ",".join(peers),
            "--cluster", self.name,
            "--timeout", str(TIMEOUT),
            "--write-timeout", str(WRITE_TIMEOUT),
            "--hist", str(self.hist),
            "--cluster-key-file", self.key_file,
            port=port,
            env={"DOOZER_TEST_FAULTS": ffile},
        )
        node.fault_file = ffile  # type: ignore[attr-defined]
        self.all.append(node)
        return node

    def start(self) -> None:
        ports = [free_port() for _ in range(self.n)]
        addrs = [f"127.0.0.1:{p}" for p in ports]
        for p, a in zip(ports, addrs):
            self.slots.append(self._new(p, [x for x in addrs if x != a]))
        for node in self.slots:
            node.start(wait=False)
        for node in self.slots:
            node.wait_up()
        if not self.wait_healthy(60):
            raise RuntimeError("the cluster did not form")

    def addr(self, slot: int) -> str:
        return self.slots[slot].addr

    def peer_get(self, addr: str, path: str, timeout: float = 2) -> tuple[int, Any]:
        """GET a ``/_peer/`` endpoint as a peer (a one-time token made with
        the cluster key, where the code has them)."""
        headers = {}
        if _make_token is not None:
            with open(self.key_file, "rb") as f:
                key = f.read().splitlines()[0].strip()
            target = path.split("?")[0].encode()
            try:  # a one-time token for this method, path and time
                token = _make_token(key, b"GET", target, time.time())
            except TypeError:  # older code: the token read the clock itself,
                try:  # or was one token for any peer request
                    token = _make_token(key, b"GET", target)
                except TypeError:
                    token = _make_token(key)
            headers["X-Doozer-Peer"] = token
        return http_call(addr, "GET", path, timeout=timeout, headers=headers)

    def replace(self, slot: int) -> NodeProcess:
        """Start a new node (new port, new id) for ``slot``; it claims the
        slot freed when the dead member is removed."""
        peers = [n.addr for i, n in enumerate(self.slots) if i != slot]
        node = self._new(free_port(), peers).start(wait=False)
        node.wait_up(60)
        with self.lock:
            self.slots[slot] = node
        return node

    def set_blocked(self, slot: int, addrs: list[str]) -> None:
        tmp = self.slots[slot].fault_file + ".tmp"  # type: ignore[attr-defined]
        with open(tmp, "w") as f:
            json.dump(addrs, f)
        os.replace(tmp, self.slots[slot].fault_file)  # type: ignore[attr-defined]

    def heal(self) -> None:
        for i, node in enumerate(self.slots):
            if i in self.paused:
                node.signal(signal.SIGCONT)
            self.set_blocked(i, [])
        self.paused.clear()

    def stop_all(self) -> None:
        for node in self.all:
            try:
                node.signal(signal.SIGCONT)
                node.stop()
            except Exception:  # noqa: BLE001 - cleanup must go on
                pass

    # -- state -----------------------------------------------------------

    def healthy(self) -> bool:
        """Every slot's node is up and votes, the CAL has n members that
        are exactly our nodes, and a write commits.

        A node votes some time after it claims its slot; until then the
        cluster has one member fewer to lose. ``/v1/self`` says so
        (``voting``); a node without that field is asked
        ``/_peer/consensus`` (``member``: it votes in the next instance)."""
        try:
            ids = []
            for node in self.slots:
                st, me = http_call(node.addr, "GET", "/v1/self", timeout=2)
                if st != 200 or not me.get("member"):
                    return False
                if "voting" in me:
                    if me["voting"] is not True:
                        return False
                else:
                    st, state = self.peer_get(node.addr, "/_peer/consensus")
                    if st != 200 or state.get("member") is not True:
                        return False
                ids.append(me["id"])
            st, cl = http_call(self.slots[0].addr, "GET", "/v1/cluster", timeout=2)
            if st != 200 or sorted(m["id"] for m in cl["members"]) != sorted(ids):
                return False
            st, _ = http_call(self.slots[0].addr, "POST", "/v1/nop", timeout=4)
            return st == 200
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
            return False

    def wait_healthy(self, seconds: float, stable: float = STABLE) -> bool:
        """Healthy without a break for ``stable`` seconds, within ``seconds``.

        One healthy answer is not enough: a removal proposed just before
        the heal (a member cut off for about --timeout) may be decided a
        moment after it, and the next fault would then hit a cluster one
        member short (seed 3602: a 5-node cluster down to 4, then 2 killed).
        """
        deadline = time.monotonic() + seconds
        since: Optional[float] = None
        while time.monotonic() < deadline:
            started = time.monotonic()
            if self.healthy():
                if since is None:
                    since = started
                elif time.monotonic() - since >= stable:
                    self.healthy_since = since
                    return True
            else:
                since = None
            time.sleep(0.25)
        return False

    def settle(self, seconds: float = 60) -> int:
        """Wait until every node has applied the same rev after a nop;
        returns that rev."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                st, body = http_call(self.slots[0].addr, "POST", "/v1/nop", timeout=4)
                if st != 200:
                    time.sleep(0.5)
                    continue
                target = body["rev"]
                while time.monotonic() < deadline:
                    revs = [http_call(n.addr, "GET", "/v1/rev", timeout=2)[1]["rev"] for n in self.slots]
                    if min(revs) >= target:
                        return target
                    time.sleep(0.2)
            except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
                time.sleep(0.5)
        raise RuntimeError("the cluster did not settle")

    def consensus(self, slot: int) -> Optional[dict]:
        """The slot's node's ``/_peer/consensus`` view, or None."""
        try:
            st, body = self.peer_get(self.addr(slot), "/_peer/consensus")
        except (OSError, http.client.HTTPException, ValueError):
            return None
        return body if st == 200 and isinstance(body, dict) else None

    def decided(self, slot: int) -> Optional[int]:
        """The slot's node's highest decided seqn, or None."""
        view = self.consensus(slot)
        try:
            return int(view["decided"]) if view is not None else None
        except (KeyError, TypeError, ValueError):
            return None

    def snapshot_installs(self) -> dict:
        """Snapshot installs of the run, from every node's log (a line with
        "copied cluster" per install): ``joins`` (a new node's first copy),
        ``catchups`` (the others: a node left behind) and ``counted``, the
        sum of ``counters.snapshot_installs`` in the live nodes'
        ``/_peer/consensus`` (0 where the field is missing)."""
        copies = joins = 0
        for node in self.all:
            try:
                text = node.read_log()
            except OSError:
                continue
            k = text.count("copied cluster")
            copies += k
            if k and "started cluster" not in text:
                joins += 1
        counted = 0
        for slot in range(len(self.slots)):
            view = self.consensus(slot) or {}
            counters = view.get("counters") or {}
            counted += int(counters.get("snapshot_installs", 0) or 0)
        return {"total": copies, "joins": joins, "catchups": copies - joins, "counted": counted}

    def dump_consensus(self, tag: str) -> str:
        """Save every running node's consensus state (``/_peer/consensus``)
        in the work directory: what a stalled log is waiting for."""
        states = {}
        for node in self.all:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                st, body = self.peer_get(node.addr, "/_peer/consensus", timeout=5)
                states[node.addr] = body if st == 200 else {"status": st, "body": body}
            except (OSError, http.client.HTTPException, ValueError) as e:
                states[node.addr] = {"error": repr(e)}
        path = os.path.join(self.workdir, f"consensus-{tag}.json")
        with open(path, "w") as f:
            json.dump(states, f, indent=1, sort_keys=True)
        return path

    def dump_log(self, node: NodeProcess, start: int, end: int) -> NodeLog:
        """The node's changes with ``start <= rev <= end``, via the watch API."""
        rev = start
        events: list[Event] = []
        first = True
        while rev <= end:
            q = urllib.parse.urlencode({"glob": "/**", "rev": rev, "limit": 5000, "timeout": 1})
            st, body = http_call(node.addr, "GET", f"/v1/watch?{q}", timeout=30)
            if st == 410 and first:
                rev = start = int(body["oldest"])
                continue
            if st != 200:
                raise RuntimeError(f"dumping {node.addr}: {st} {body}")
            first = False
            events.extend(Event.from_api(e) for e in body["events"] if e["rev"] <= end)
            if body["next"] <= rev:
                raise RuntimeError(f"dumping {node.addr}: next did not advance")
            rev = body["next"]
        return NodeLog(node.addr, events, start, end)


class Workload(ClientThreads):
    """Client workers on every node, recording into one :class:`Recorder`."""

    def __init__(self, cluster: Cluster, rec: Recorder, seed: int, workers: int,
                 keys: int, prefix: str, start_rev: int, generation: float = 20.0) -> None:
        super().__init__()
        self.cluster = cluster
        self.rec = rec
        self.seed = seed
        self.workers = workers
        self.keys = keys
        self.prefix = prefix
        self.start_rev = start_rev
        self.generation = generation
        self.t0 = time.monotonic()

    def key(self, rng: random.Random) -> str:
        gen = int((time.monotonic() - self.t0) / self.generation)
        return f"{self.prefix}/g{gen}/k{rng.randrange(self.keys)}"

    def start(self) -> None:
        n = self.cluster.n
        for w in range(self.workers * n):
            t = threading.Thread(target=self._client, args=(w, w % n), daemon=True, name=f"w{w}")
            self.threads.append(t)
        globs = [f"{self.prefix}/**", f"{self.prefix}/*/k1", f"{self.prefix}/g*/k?"]
        for s in range(n):
            for j, glob in enumerate(globs[:2] if n > 3 else globs):
                t = threading.Thread(target=self._watcher, args=(f"watch{s}.{j}", s, glob), daemon=True)
                self.threads.append(t)
        super().start()

    def _request(self, proc: Any, slot: int, kind: str, key: str, method: str, path: str,
                 body: Optional[bytes] = None, value: Optional[bytes] = None,
                 prec: Optional[int] = None, timeout: float = CLIENT_TIMEOUT):
        """Run one request; returns the completed op, or None when the
        connection could not even be opened (nothing was sent)."""
        return recorded_call(http_call, self.cluster.addr(slot), method, path, body, timeout,
                             lambda: self.rec.invoke(proc, kind, key, value=value, prec=prec),
                             self.rec.indeterminate, self.rec.from_http)

    def _client(self, w: int, slot: int) -> None:
        rng = random.Random(f"{self.seed}-client-{w}")
        seen: dict[str, int] = {}
        n = 0
        while not self.stop.is_set():
            key = self.key(rng)
            url = "/v1/store" + urllib.parse.quote(key)
            r = rng.random()
            n += 1
            value = f"w{w}-{n}".encode()
            if r < 0.25:
                op = self._request(w, slot, SET, key, "PUT", url, value, value=value)
            elif r < 0.5:
                prec = 0 if rng.random() < 0.15 or key not in seen else seen[key]
                op = self._request(w, slot, CAS, key, "PUT", f"{url}?rev={prec}", value, value=value, prec=prec)
            elif r < 0.6:
                prec = seen.get(key) if rng.random() < 0.5 else None
                q = f"?rev={prec}" if prec is not None else ""
                op = self._request(w, slot, DELETE, key, "DELETE", url + q, prec=prec)
            else:
                op = self._request(w, slot, READ, key, "GET", url + "?consistent=1")
            if op is None:
                time.sleep(0.2)  # the node is down: nothing was sent
                continue
            if op.rev is not None and (op.outcome == "ok" and op.kind != DELETE or op.code == "REV_MISMATCH"):
                seen[key] = op.rev
            elif op.kind == DELETE and op.outcome == "ok":
                seen.pop(key, None)
            time.sleep(rng.uniform(0.0, 0.03))

    def _watcher(self, proc: str, slot: int, glob: str) -> None:
        rng = random.Random(f"{self.seed}-{proc}")
        nxt = self.start_rev + 1
        while not self.stop.is_set():
            q = urllib.parse.urlencode({"glob": glob, "rev": nxt, "limit": rng.choice([1, 10, 1000]),
                                        "timeout": WATCH_WAIT})
            op = self._request(proc, slot, WATCH, glob, "GET", f"/v1/watch?{q}", prec=nxt,
                               timeout=WATCH_WAIT + CLIENT_TIMEOUT)
            if op is None:
                time.sleep(0.2)
                continue
            if op.outcome == "ok":
                nxt = op.rev
            elif op.code == "TOO_LATE":
                # A node that joined by snapshot lacks the older history:
                # start a new run where it can answer.
                try:
                    st, body = http_call(self.cluster.addr(slot), "GET", "/v1/rev", timeout=2)
                    nxt = max(nxt, body["rev"] + 1) if st == 200 else nxt
                except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
                    pass
                time.sleep(0.2)
            else:
                time.sleep(0.1)


class Nemesis:
    """Seeded faults, one at a time, each healed and settled before the next."""

    def __init__(self, cluster: Cluster, seed: int, log: Callable[[str], None],
                 kinds: tuple = FAULT_KINDS, path: Optional[str] = None) -> None:
        self.cluster = cluster
        self.path = path  # the nemesis log, one JSON line per action
        self.rng = random.Random(f"{seed}-nemesis")
        self.log = log
        self.kinds = kinds
        self.counts: Counter = Counter()
        self.events: list[dict] = []
        self.unhealthy = 0
        #: per ``snapshot`` fault: installs by the member cut off
        self.snapshot_results: list[int] = []
        self.t0 = time.monotonic()
        #: no fault going on: healthy since the last one (see :meth:`windows`)
        self.calm = True

    def note(self, kind: str, **what: Any) -> None:
        now = time.monotonic()  # also the clock of the recorded ops ("at")
        entry = {"t": round(now - self.t0, 2), "fault": kind, **what, "at": now}
        if kind == "healthy":
            self.calm = True
        elif kind not in ("heal", "snapshot-installed"):
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
            elif start is None and e["fault"] not in ("heal", "snapshot-installed"):
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


def run(nodes: int = 3, seconds: float = 60, seed: int = 1, workers: int = 3, keys: int = 6,
        out: Optional[str] = None, workdir: Optional[str] = None, kinds: tuple = FAULT_KINDS,
        quiet: bool = False, time_limit: float = 300, fast: bool = False, rate: float = FAST_RATE,
        clients: int = FAST_CLIENTS, lease_holders: int = LEASE_HOLDERS) -> dict:
    """One run; returns a summary dict (``ok``, ``verdict``, counts, report).

    ``fast``: the keep-alive workload of :mod:`tests.faults.fastload` at
    ``rate`` writes a second (0: unpaced) with ``clients`` connections per
    node, instead of ``workers`` threads per node. ``lease_holders``: the
    lease holders of :mod:`tests.faults.leaseload` contending for
    ``/election/s<seed>/leader`` (0: none)."""
    lines: list[str] = []
    t_start = time.monotonic()

    def log(msg: str) -> None:
        line = f"[{time.monotonic() - t_start:7.2f}] {msg}"
        lines.append(line)
        if not quiet:
            print(line, flush=True)

    own_dir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="doozer-faults-")
    os.makedirs(workdir, exist_ok=True)
    cluster = Cluster(nodes, workdir, f"faults{seed}", log, hist=FAST_HIST if fast else HIST)
    rec = Recorder()
    lease_log = LeaseLog()  # time.monotonic, like the recorder
    result: dict = {"seed": seed, "nodes": nodes, "workdir": workdir, "fast": fast}
    work: Any = None
    holders: Optional[LeaseWorkload] = None
    try:
        pace = f"{rate:g} writes/s" if rate else "unpaced"
        mode = f"fast workload ({pace}, {clients} clients per node)" if fast else f"{workers} workers per node"
        log(f"fault run: {nodes} nodes, {seconds} s, seed {seed}, {mode}, kinds {','.join(kinds)}, workdir {workdir}")
        cluster.start()
        log("cluster formed: " + ", ".join(n.addr for n in cluster.slots))
        start_rev = cluster.settle()
        prefix = f"/fault/s{seed}"
        if fast:
            work = FastWorkload(cluster, rec, seed, clients, keys, prefix, start_rev, rate, CLIENT_TIMEOUT, log=log)
        else:
            work = Workload(cluster, rec, seed, workers, keys, prefix, start_rev)
        nemesis = Nemesis(cluster, seed, log, kinds, path=os.path.join(workdir, "nemesis.jsonl"))
        work.start()
        if lease_holders:
            holders = LeaseWorkload(cluster, rec, lease_log, seed, lease_holders,
                                    f"/election/s{seed}/leader", start_rev, http_call,
                                    calm=lambda: nemesis.calm)
            holders.start()
        t_work = time.monotonic()
        until = t_work + seconds
        nemesis.run(until)
        if not nemesis.unhealthy:
            time.sleep(max(0.0, until - time.monotonic()))
        log("stopping workers")
        if holders is not None:
            holders.stop.set()
        work.join(CLIENT_TIMEOUT + WATCH_WAIT + 5)
        if holders is not None:
            holders.join(CLIENT_TIMEOUT + WATCH_WAIT + 5)
        work_seconds = time.monotonic() - t_work
        cluster.heal()
        if not cluster.wait_healthy(90):
            log("cluster not healthy after the run")
            nemesis.unhealthy += 1
        try:
            end_rev = cluster.settle()
            ends = [end_rev] * nodes
        except RuntimeError:
            # Stuck (a liveness failure, reported above): check what each
            # node has applied, up to its own rev.
            log("cluster did not settle: dumping each node up to its own rev")
            ends = [http_call(n.addr, "GET", "/v1/rev", timeout=5)[1]["rev"] for n in cluster.slots]
            end_rev = max(ends)
        if fast:
            logs = work.logs({n.addr: e for n, e in zip(cluster.slots, ends)})
            log(f"followed {len(logs)} node logs ({sum(len(lg.events) for lg in logs)} events), "
                f"revs {start_rev + 1}..{end_rev}")
        else:
            logs = [cluster.dump_log(n, start_rev + 1, e) for n, e in zip(cluster.slots, ends)]
            log(f"dumped {len(logs)} node logs, revs {start_rev + 1}..{end_rev}")
        installs = cluster.snapshot_installs()
        history = rec.history(logs=logs, start_rev=start_rev)
        history.leases = list(lease_log.ops)
        history.faults = nemesis.windows()
        if out:
            history.save(out)
        t_check = time.monotonic()
        report = check_history(history, time_limit=time_limit)
        check_seconds = time.monotonic() - t_check
        ops = Counter((op.kind, op.outcome) for op in history.ops)
        codes = Counter(f"{op.kind} {op.code or 'no answer'}" for op in history.ops
                        if op.outcome == "indeterminate")
        acked = sum(v for (k, o), v in ops.items() if k in WRITES and o == OK)
        # Acknowledged writes per second of the run (by completion time):
        # the median and the best second show the rate between faults.
        per_s = Counter(int(op.complete - t_work) for op in history.ops  # type: ignore[operator]
                        if op.kind in WRITES and op.outcome == OK and op.complete is not None)
        secs = sorted(per_s.get(i, 0) for i in range(max(1, int(work_seconds))))
        watch_calls = sum(v for (k, _o), v in ops.items() if k == WATCH)
        violations = sum(len(r.problems) for r in report.results if r.verdict is Verdict.FAIL)
        result.update(
            ok=report.ok,
            verdict=report.verdict.value,
            report=report.summary(),
            violations=violations,
            ops=dict(sorted((f"{k} {o}", v) for (k, o), v in ops.items())),
            ops_total=len(history.ops),
            client_ops=len(history.ops) - watch_calls,
            watch_calls=watch_calls,
            acked_writes=acked,
            work_seconds=round(work_seconds, 1),
            writes_per_s=round(acked / work_seconds, 1) if work_seconds > 0 else 0.0,
            writes_per_s_median=secs[len(secs) // 2],
            writes_per_s_best=secs[-1],
            indeterminate=dict(sorted(codes.items())),
            faults=dict(nemesis.counts),
            fault_log=nemesis.events,
            unhealthy=nemesis.unhealthy,
            snapshot_installs=installs,
            snapshot_faults=nemesis.snapshot_results,
            revs=end_rev - start_rev,
            node_logs=len(logs),
            check_seconds=round(check_seconds, 2),
            leases=next((r.info for r in report.results if r.name == "leases"), {}),
            seconds=round(time.monotonic() - t_start, 1),
        )
        log("ops by kind and outcome: " + json.dumps(result["ops"]))
        log("indeterminate by cause: " + json.dumps(result["indeterminate"]))
        log(f"ops checked: {len(history.ops)} ({result['client_ops']} client operations, "
            f"{watch_calls} watch calls); revs in the run: {end_rev - start_rev}; node logs: {len(logs)}")
        log(f"acknowledged writes: {acked} in {work_seconds:.1f} s, {result['writes_per_s']} writes/s "
            f"(per second: median {result['writes_per_s_median']}, best {result['writes_per_s_best']})")
        log("faults injected: " + json.dumps(result["faults"]) + f"; unhealthy after heal: {nemesis.unhealthy}")
        log(f"snapshot installs: {installs['total']} ({installs['catchups']} by nodes left behind, "
            f"{installs['joins']} joins of new nodes; counters.snapshot_installs of the live nodes: "
            f"{installs['counted']}); by the member of each snapshot fault: {nemesis.snapshot_results}")
        if result["leases"]:
            log("leases: " + json.dumps(result["leases"]))
        log(f"violations: {violations}")
        log(f"checker ({result['check_seconds']} s): " + report.summary())
        return result
    finally:
        if fast and work is not None:
            work.close()
        cluster.stop_all()
        with open(os.path.join(workdir, "run.log"), "w") as f:
            f.write("\n".join(lines) + "\n")
        if own_dir and result.get("ok"):
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workers", type=int, default=3, help="client workers per node")
    p.add_argument("--keys", type=int, default=6, help="keys per generation (20 s)")
    p.add_argument("--out", default=None, help="save the history as JSON lines")
    p.add_argument("--workdir", default=None, help="node directories (kept)")
    p.add_argument("--time-limit", type=float, default=600, help="checker search budget, seconds")
    p.add_argument("--kinds", default=",".join(FAULT_KINDS),
                   help=f"fault kinds, comma-separated (default: all of {','.join(FAULT_KINDS)})")
    p.add_argument("--fast", action="store_true",
                   help="keep-alive workload at --rate writes/s (mostly blind writes to per-client keys)")
    p.add_argument("--rate", type=float, default=None,
                   help=f"target writes per second of --fast (implies it; default {FAST_RATE}; 0: unpaced)")
    p.add_argument("--clients", type=int, default=FAST_CLIENTS,
                   help=f"--fast: connections per node (default {FAST_CLIENTS})")
    p.add_argument("--lease-holders", type=int, default=LEASE_HOLDERS,
                   help=f"lease holders contending for the election key (default {LEASE_HOLDERS}; 0: none)")
    args = p.parse_args(argv)
    fast = args.fast or args.rate is not None
    rate = FAST_RATE if args.rate is None else args.rate
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or not kinds:
        p.error(f"unknown fault kind {unknown[0] if unknown else '(none)'}; choose from {', '.join(FAULT_KINDS)}")

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # runs the cleanup: every node is killed

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # a background job may have inherited SIG_IGN
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    try:
        res = run(args.nodes, args.seconds, seed, args.workers, args.keys, args.out, args.workdir,
                  kinds=kinds, time_limit=args.time_limit, fast=fast, rate=rate, clients=args.clients,
                  lease_holders=args.lease_holders)
    except RuntimeError as e:
        print(f"run failed (seed {seed}): {e}", file=sys.stderr)
        return 3
    print(json.dumps({k: v for k, v in res.items() if k not in ("report", "fault_log")}, indent=1))
    return {"ok": 0, "fail": 1}.get(res["verdict"], 2)


if __name__ == "__main__":
    sys.exit(main())
