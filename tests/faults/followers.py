"""The fault suite's node-log followers (:class:`LogFollowers`), used by the
fast workload (:mod:`tests.faults.fastload`).

At thousands of revs a second, a node's history window would have to hold
millions of revs to be dumped at the end (and every snapshot would carry
them all), so the followers read every node process's log **during** the
run through ``GET /v1/watch?glob=/**`` and keep it in the runner: one
:class:`~tests.faults.history.NodeLog` per node process and contiguous
stretch.

A node restarted from its data dir (durable mode,
:meth:`tests.faults.cluster.Cluster.restart`) is a new process at the same
address: it gets a follower of its own, whose logs are named
``HOST:PORT@2`` (its second start), ``HOST:PORT@3`` etc. That follower
starts :data:`RESTART_OVERLAP` revs before where the dead process's
follower got, so that what the restarted node serves of the revs just
before its crash (the ones a lost log would lose) is checked against what
the dead one served.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.parse
from typing import Any, Optional

from tests.faults.history import Event, NodeLog
from tests.faults.keepalive import Conn, HTTPError, Timeout

FOLLOW_LIMIT = 5000
#: A follower that is caught up waits this long before its next call.
FOLLOW_PAUSE = 0.25
#: A restarted process's follower starts this many revs before where the
#: previous process's follower got (a few seconds of the fast workload).
RESTART_OVERLAP = 20_000


class LogFollowers:
    """Follow the event log of every node process the cluster starts.

    One follower per process (the cluster's ``all`` list, and how often
    each of its nodes was started, ``starts``, are looked at every half
    second); each long-polls ``/v1/watch?glob=/**&rev=<next>`` on its node
    and keeps every event, from the run's first rev (or the oldest its node
    keeps, for a node that joined later) for as long as the process runs.
    A ``TOO_LATE`` ends a stretch and starts the next at the node's oldest
    rev. The node names of the logs are ``HOST:PORT`` (``HOST:PORT@N`` for
    the N-th start of a node restarted from its data dir) and, for later
    stretches, ``...#2`` etc.
    """

    def __init__(self, cluster: Any, start_rev: int, loop: asyncio.AbstractEventLoop) -> None:
        self.cluster = cluster
        self.start_rev = start_rev
        self.loop = loop
        self.done: list[NodeLog] = []
        #: process key (see :meth:`_key`) -> {"addr", "events", "start", "next", "part"}
        self.state: dict[str, dict] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        #: address -> the key of its newest process followed
        self.latest: dict[str, str] = {}
        self.finishing = False
        self.watcher: Optional[asyncio.Task] = None

    def start(self) -> None:
        self.watcher = asyncio.get_running_loop().create_task(self._watch_cluster())

    def _key(self, node: Any) -> str:
        """The name of the node's current process: its address, and the
        number of its start after the first."""
        n = getattr(self.cluster, "starts", {}).get(node.addr, 1)
        return node.addr if n <= 1 else f"{node.addr}@{n}"

    def _spawn(self, node: Any) -> None:
        """A follower for the node's current process, unless it has one."""
        key = self._key(node)
        if key in self.tasks or node.proc is None:
            return
        start = self.start_rev + 1
        before = self.latest.get(node.addr)
        if before is not None:  # a restart: go back a little from where the last process got
            start = max(start, self.state[before]["next"] - RESTART_OVERLAP)
        self.latest[node.addr] = key
        self.state[key] = {"addr": node.addr, "events": [], "start": start, "next": start, "part": 1}
        self.tasks[key] = asyncio.create_task(self._follow(node, key, node.proc))

    async def _watch_cluster(self) -> None:
        while not self.finishing:
            for node in list(self.cluster.all):
                self._spawn(node)
            await asyncio.sleep(0.5)

    def _close_stretch(self, key: str) -> None:
        st = self.state[key]
        if st["next"] - 1 >= st["start"]:
            name = key if st["part"] == 1 else f"{key}#{st['part']}"
            self.done.append(NodeLog(name, st["events"], st["start"], st["next"] - 1))
        st["part"] += 1
        st["events"] = []

    async def _follow(self, node: Any, key: str, proc: Any) -> None:
        """Follow one process (``proc``: a restart gives the node another)."""
        st = self.state[key]
        conn = Conn(node.addr)
        while True:
            if st.get("until") is not None and st["next"] > st["until"]:
                break
            if proc.poll() is not None:
                break  # the process is dead: its log ends where we got
            try:
                if not conn.open:
                    await conn.connect()
                q = urllib.parse.urlencode({"glob": "/**", "rev": st["next"], "limit": FOLLOW_LIMIT, "timeout": 1})
                status, body = await conn.request("GET", f"/v1/watch?{q}", timeout=30)
            except (OSError, Timeout, asyncio.TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, HTTPError, ValueError):
                conn.close()
                await asyncio.sleep(0.2)
                continue
            if status == 410 and body and "oldest" in body:
                oldest = int(body["oldest"])
                if st["events"] or st["next"] > st["start"]:
                    self._close_stretch(key)
                st["start"] = st["next"] = oldest
                continue
            if status != 200 or not body:
                await asyncio.sleep(0.2)
                continue
            intern = sys.intern
            for e in body["events"]:
                raw = e.get("value")
                if raw is not None and e.get("encoding") == "base64":
                    ev = Event.from_api(e)
                else:
                    ev = Event(int(e["rev"]), intern(e["path"]), e["op"], None if raw is None else raw.encode())
                st["events"].append(ev)
            if body["next"] > st["next"]:
                st["next"] = body["next"]
            if len(body["events"]) < FOLLOW_LIMIT:
                # Caught up: let events gather (a few hundred per call
                # rather than one call per write, which costs the node).
                await asyncio.sleep(FOLLOW_PAUSE)
        conn.close()
        self._close_stretch(key)

    async def finish(self, ends: dict[str, int], seconds: float) -> list[NodeLog]:
        """Let each live node's follower reach its end rev (``ends``:
        address -> rev), then stop all."""
        self.finishing = True
        if self.watcher is not None:
            self.watcher.cancel()
        for node in list(self.cluster.all):  # a node started (or restarted) just now
            if node.addr in ends:
                self._spawn(node)
        for key, st in self.state.items():
            # only the newest process of an address is asked for: older ones are dead
            st["until"] = ends.get(st["addr"], 0) if self.latest.get(st["addr"]) == key else 0
        done, pending = await asyncio.wait(list(self.tasks.values()), timeout=seconds)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            for key, task in self.tasks.items():
                if task in pending and self.state[key]["events"] is not None:
                    self._close_stretch(key)
        return self.done
