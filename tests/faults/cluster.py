"""The fault suite's cluster: 3 or 5 real ``twistd -n doozer`` processes on
127.0.0.1 (:class:`Cluster`), with what the nemesis and the runner ask of
them: replace a member through its freed CAL slot, cut peers off through
the test-only transport hook (:mod:`doozer.server.faults`), tell whether
the cluster is healthy, and dump a node's event log through the watch API.

In durable mode (``durable=True``) every node has a data dir
(``--data-dir``, SPEC §8) and a killed node can be started again from it
(:meth:`Cluster.restart`): same port, same arguments, same id.
"""

from __future__ import annotations

import base64
import glob
import http.client
import json
import os
import signal
import threading
import time
import urllib.parse
from typing import Any, Callable, Optional

from tests.faults.clients import WRITE_TIMEOUT, http_call
from tests.faults.history import Event, NodeLog
from tests.procutil import NodeProcess, free_port

try:  # peers' endpoints (/_peer/...) take a token made with the cluster key
    from doozer.server.auth import make_token as _make_token
except ImportError:  # code before peer tokens: /_peer/ is open to clients
    _make_token = None

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
#: Seconds the cluster must stay healthy after a heal before the next fault.
STABLE = 2.0

class Cluster:
    """The nodes of one run, by slot (a replaced node takes its slot)."""

    def __init__(self, n: int, workdir: str, name: str, log: Callable[[str], None],
                 hist: int = HIST, durable: bool = False) -> None:
        self.n = n
        self.hist = hist
        #: every node with ``--data-dir <its workdir>/data``
        self.durable = durable
        #: address -> how many times its node was started (restarts: > 1)
        self.starts: dict[str, int] = {}
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
            *(("--data-dir", self.data_dir(wd)) if self.durable else ()),
            port=port,
            env={"DOOZER_TEST_FAULTS": ffile},
        )
        node.fault_file = ffile  # type: ignore[attr-defined]
        self.all.append(node)
        self.starts[node.addr] = 1
        return node

    @staticmethod
    def data_dir(workdir: str) -> str:
        """The data dir of the node that runs in ``workdir`` (durable mode)."""
        return os.path.join(workdir, "data")

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

    def kill(self, slot: int) -> None:
        """``kill -9`` the slot's node and wait until it is gone."""
        node = self.slots[slot]
        node.signal(signal.SIGKILL)
        if node.proc is not None:
            node.proc.wait(10)

    def restart(self, slot: int, wait: bool = True) -> NodeProcess:
        """Start the slot's killed node again from its data dir: same
        workdir, port and arguments, so it comes back under its id (durable
        mode only). It stays in its slot (and in ``all``). With ``wait``,
        returns once it answers (:meth:`wait_up` otherwise); a node that
        exits instead (e.g. it refuses its data dir) raises RuntimeError
        with the end of its log."""
        if not self.durable:
            raise ValueError("restart needs durable mode (nodes with --data-dir)")
        node = self.slots[slot]
        if node.proc is not None and node.proc.poll() is None:
            raise RuntimeError(f"slot {slot} ({node.addr}) still runs: kill it first")
        if getattr(node, "log", None):
            node.log.close()  # the next start appends to node.log again
        node.start(wait=False)
        # after the new process is in place: a follower of the log takes the
        # count as a new process (tests/faults/followers.py)
        self.starts[node.addr] = self.starts.get(node.addr, 1) + 1
        if wait:
            self.wait_up(slot)
        return node

    def wait_up(self, slot: int, seconds: float = 60) -> None:
        """Until the slot's node answers HTTP (RuntimeError if it exits)."""
        node = self.slots[slot]
        try:
            node.wait_up(seconds)
        except RuntimeError as e:
            raise RuntimeError(f"slot {slot} ({node.addr}) restarted from {self.data_dir(node.workdir)}: {e}") from None

    def lose_log(self, slot: int) -> list[str]:
        """CHECKER SELF-TEST ONLY (``run(lose_log=True)``): delete the slot's
        (dead) node's log segments, keeping its identity and snapshots, as
        if none of its log's writes had reached the disk (fsyncs that lied).
        Returns the names deleted."""
        node = self.slots[slot]
        assert node.proc is None or node.proc.poll() is not None, "the node must be dead"
        gone = sorted(glob.glob(os.path.join(self.data_dir(node.workdir), "log-*")))
        for path in gone:
            os.remove(path)
        return [os.path.basename(p) for p in gone]

    def restart_counts(self) -> int:
        """How many times the restarted nodes' logs say "restarts in
        cluster" (a start from a data dir, under the node's old id)."""
        restarted = 0
        for node in self.all:
            if self.starts.get(node.addr, 1) <= 1:
                continue
            try:
                restarted += node.read_log().count("restarts in cluster")
            except OSError:
                continue
        return restarted

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
