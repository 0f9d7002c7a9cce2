"""The fault suite's fast workload: thousands of recorded writes per second.

The thread workers of :mod:`tests.faults.workload` (``http.client``, a new
connection per request, pauses of 0-30 ms) reach about 140 revs/s; this
module drives a cluster at a target rate (``--fast``, ``--rate``) from one
asyncio loop in a thread of the runner, with keep-alive HTTP/1.1
connections, still recording every operation in the run's
:class:`~tests.faults.history.Recorder` (invoke just before the request is
written, complete when the answer is read; no answer, a lost connection or a
5xx is indeterminate).

Workload (per client; ``clients`` clients per node, each on its node's slot):

- most operations are blind writes (``set``, now and then a ``cas`` on the
  client's last rev, or a ``delete``) to the client's own keys
  ``<prefix>/p<gen>/c<client>/k<i>``: one writer per key, so checking them
  costs the linearizability search nearly nothing, while every one of them
  is still checked against every node's log;
- a smaller share (:data:`SHARED_WRITE` + :data:`SHARED_READ`) are CAS,
  sets, deletes and ``consistent=1`` reads of the shared keys
  ``<prefix>/g<gen>/k<i>`` that every client uses, as the thread workers do,
  so that linearizability is checked under real contention.

``gen`` changes every 20 s (bounds the per-key history the search sees).
Every written value is unique in the run (``c<client>-<n>``).

Watch streams long-poll as the thread watchers do (one stream on ``/**`` of
the run's prefix always asks for ``limit=1000``, so that it keeps up).

Node logs: at thousands of revs a second, a node's history window would
have to hold millions of revs to be dumped at the end (and every snapshot
would carry them all), so :class:`LogFollowers` follow every node process's
log **during** the run through ``GET /v1/watch?glob=/**`` and keep it in the
runner: one :class:`~tests.faults.history.NodeLog` per node process and
contiguous stretch (a follower told ``TOO_LATE``, e.g. after its node
installed a snapshot whose history starts later, starts a new stretch).
Killed nodes' logs are checked too, up to where their follower got.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
import urllib.parse
from typing import Any, Callable, Optional

from tests.faults.history import CAS, DELETE, READ, SET, WATCH, Event, NodeLog, Op, Recorder

#: Keys of one client per generation (blind writes, one writer each).
PRIVATE_KEYS = 4
#: Shares of the operation mix (the rest are writes to the client's own keys).
SHARED_WRITE = 0.08  # cas (mostly), set, delete on the shared keys
SHARED_READ = 0.06  # consistent reads of the shared keys
OWN_CAS = 0.05
OWN_DELETE = 0.03
#: Fraction of all operations that are writes (for the pacing).
WRITE_SHARE = 1.0 - SHARED_READ
#: Watch: the node's own long-poll timeout, seconds.
WATCH_WAIT = 2
FOLLOW_LIMIT = 5000
#: See :class:`Pacer`.
BURST = 0.5
#: A client whose node refused at once (``READONLY``: not a member) waits
#: this long before its next operation, instead of spinning on refusals.
REFUSED_PAUSE = 0.05
FOLLOW_PAUSE = 0.25
#: Pause between a watch stream's calls (0 to this), so that streams of the
#: shared keys ask for batches more often than for one event at a time.
WATCH_PAUSE = 0.05


class HTTPError(Exception):
    """A response that could not be parsed."""


class Timeout(Exception):
    """No complete answer within the request's timeout."""


class Conn:
    """One keep-alive HTTP/1.1 connection (one request at a time)."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None
        self.expired = False

    def reset(self, addr: str) -> None:
        """Close, and aim the next connection at ``addr``."""
        self.close()
        self.addr = addr
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)

    @property
    def open(self) -> bool:
        return self.writer is not None

    async def connect(self, timeout: float = 2.0) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=1 << 20), timeout)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
        self.reader = self.writer = None

    def _expire(self) -> None:
        self.expired = True
        if self.writer is not None:
            self.writer.transport.abort()

    async def request(self, method: str, path: str, body: Optional[bytes] = None,
                      timeout: float = 10.0) -> tuple[int, Any]:
        """Send one request on the open connection and read its answer:
        (status, JSON body or None). Raises on any trouble, :class:`Timeout`
        when the answer is not complete within ``timeout`` (the caller
        closes the connection). The timeout is a timer that aborts the
        connection, cheaper than a task per request (``asyncio.wait_for``)."""
        assert self.writer is not None
        timer = asyncio.get_running_loop().call_later(timeout, self._expire)
        try:
            return await self._request(method, path, body)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if self.expired:
                raise Timeout(f"no answer within {timeout} s") from None
            raise
        finally:
            timer.cancel()

    async def _request(self, method: str, path: str, body: Optional[bytes]) -> tuple[int, Any]:
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.addr}\r\n"
        if body is not None:
            head += f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
        self.writer.write((head + "\r\n").encode("latin-1") + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise HTTPError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            data = b"".join(chunks)
        elif status in (204, 304) or method == "HEAD":
            data = b""
        else:
            data = await self.reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        ctype = headers.get("content-type", "")
        return status, (json.loads(data) if ctype.startswith("application/json") and data else None)


class Pacer:
    """One rate for all the clients of the loop: ``rate`` operations a
    second (0: no pacing). Each operation takes the next free time slot, so
    while the clients of a broken node wait for their answers the others
    take their share. Time lost to a stall is made up by at most
    :data:`BURST` seconds' worth of operations."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self.next < now - BURST:
            self.next = now - BURST
        at = self.next
        self.next += self.interval
        if at > now:
            await asyncio.sleep(at - now)


class FastWorkload:
    """Keep-alive clients, watchers and log followers in one asyncio loop.

    :param rate: target write operations per second over the cluster
        (0: as fast as the clients go).
    :param clients: clients (connections) per node.
    """

    def __init__(self, cluster: Any, rec: Recorder, seed: int, clients: int, keys: int, prefix: str,
                 start_rev: int, rate: float, client_timeout: float, generation: float = 20.0,
                 log: Callable[[str], None] = print) -> None:
        self.cluster = cluster
        self.rec = rec
        self.seed = seed
        self.clients = clients
        self.keys = keys
        self.prefix = prefix
        self.start_rev = start_rev
        self.rate = rate
        self.client_timeout = client_timeout
        self.generation = generation
        self.log = log
        self.t0 = time.monotonic()
        self.t_stop: Optional[float] = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run_loop, daemon=True, name="fastload")
        self.stopping = False
        self.tasks: list[asyncio.Task] = []
        self.followers = LogFollowers(cluster, start_rev, self.loop)
        self.pacer = Pacer(rate / WRITE_SHARE if rate else 0)

    # -- control (from the runner's thread) --------------------------------

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def join(self, seconds: float) -> None:
        """Stop the clients and watchers (the followers go on)."""
        self.t_stop = time.monotonic()
        fut = asyncio.run_coroutine_threadsafe(self._stop(seconds), self.loop)
        fut.result(seconds + 5)

    def logs(self, ends: dict[str, int], seconds: float = 120) -> list[NodeLog]:
        """The followed node logs; live nodes' followers first reach the
        rev given in ``ends`` (address -> rev). Ends the loop."""
        fut = asyncio.run_coroutine_threadsafe(self.followers.finish(ends, seconds), self.loop)
        try:
            return fut.result(seconds + 10)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the loop (whatever still runs in it is dropped)."""
        if self.thread.ident is None:
            return  # never started
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def elapsed(self) -> float:
        """Seconds the clients ran."""
        return (self.t_stop or time.monotonic()) - self.t0

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _start(self) -> None:
        n = self.cluster.n
        total = self.clients * n
        for c in range(total):
            self.tasks.append(asyncio.create_task(self._client(c, c % n)))
        p = self.prefix
        for s in range(n):
            other = [f"{p}/**", f"{p}/*/k1", f"{p}/p*/c{s}/*"][s % 3]
            for j, glob in enumerate([f"{p}/g*/k?", other]):
                self.tasks.append(asyncio.create_task(self._watcher(f"watch{s}.{j}", s, glob)))
        self.followers.start()

    async def _stop(self, seconds: float) -> None:
        self.stopping = True
        done, pending = await asyncio.wait(self.tasks, timeout=seconds)
        for t in pending:
            t.cancel()
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                self.log(f"fast workload task failed: {t.exception()!r}")

    # -- one request -------------------------------------------------------

    async def _call(self, conn: Conn, proc: Any, slot: int, kind: str, key: str, method: str, path: str,
                    body: Optional[bytes] = None, value: Optional[bytes] = None, prec: Optional[int] = None,
                    timeout: Optional[float] = None, stream: Optional[str] = None) -> Optional[Op]:
        """One recorded request on ``conn`` (reconnected to the slot's node
        when closed). None when no connection could be opened: nothing was
        sent, no operation."""
        addr = self.cluster.addr(slot)
        if not conn.open or conn.addr != addr:
            conn.reset(addr)
            try:
                await conn.connect()
            except (OSError, asyncio.TimeoutError):
                conn.close()
                return None
        op = self.rec.invoke(proc, kind, key, value=value, prec=prec, stream=stream)
        try:
            status, data = await conn.request(method, path, body, timeout or self.client_timeout)
        except (OSError, Timeout, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                HTTPError, ValueError) as e:
            conn.close()
            return self.rec.indeterminate(op, type(e).__name__)
        except asyncio.CancelledError:
            conn.close()
            self.rec.indeterminate(op, "cancelled")
            raise
        return self.rec.from_http(op, status, data)

    # -- clients -----------------------------------------------------------

    def _gen(self) -> int:
        return int((time.monotonic() - self.t0) / self.generation)

    async def _client(self, c: int, slot: int) -> None:
        rng = random.Random(f"{self.seed}-fast-{c}")
        pacer = self.pacer
        conn = Conn(self.cluster.addr(slot))
        seen: dict[str, int] = {}
        n = 0
        try:
            while not self.stopping:
                await pacer.wait()
                if self.stopping:
                    break
                gen = self._gen()
                n += 1
                value = f"c{c}-{n}".encode()
                r = rng.random()
                if r < SHARED_WRITE + SHARED_READ:
                    key = f"{self.prefix}/g{gen}/k{rng.randrange(self.keys)}"
                else:
                    key = f"{self.prefix}/p{gen}/c{c}/k{rng.randrange(PRIVATE_KEYS)}"
                url = "/v1/store" + key  # [a-z0-9/] only: nothing to quote
                if r < SHARED_READ:
                    op = await self._call(conn, c, slot, READ, key, "GET", url + "?consistent=1")
                elif r < SHARED_READ + SHARED_WRITE:
                    q = rng.random()
                    if q < 0.7:
                        prec = 0 if rng.random() < 0.15 or key not in seen else seen[key]
                        op = await self._call(conn, c, slot, CAS, key, "PUT", f"{url}?rev={prec}", value,
                                              value=value, prec=prec)
                    elif q < 0.85:
                        op = await self._call(conn, c, slot, SET, key, "PUT", url, value, value=value)
                    else:
                        prec = seen.get(key) if rng.random() < 0.5 else None
                        op = await self._call(conn, c, slot, DELETE, key, "DELETE",
                                              url + (f"?rev={prec}" if prec is not None else ""), prec=prec)
                else:
                    q = rng.random() * (1.0 - SHARED_READ - SHARED_WRITE)
                    if q < OWN_CAS and key in seen:
                        prec = seen[key]
                        op = await self._call(conn, c, slot, CAS, key, "PUT", f"{url}?rev={prec}", value,
                                              value=value, prec=prec)
                    elif q < OWN_CAS + OWN_DELETE:
                        op = await self._call(conn, c, slot, DELETE, key, "DELETE", url)
                    else:
                        op = await self._call(conn, c, slot, SET, key, "PUT", url, value, value=value)
                if op is None:
                    await asyncio.sleep(0.2)  # the node is down: nothing was sent
                    continue
                if op.rev is not None and (op.outcome == "ok" and op.kind != DELETE or op.code == "REV_MISMATCH"):
                    seen[key] = op.rev
                elif op.kind == DELETE and op.outcome == "ok":
                    seen.pop(key, None)
                elif op.outcome == "indeterminate":
                    seen.pop(key, None)
                    if op.code == "READONLY":
                        await asyncio.sleep(REFUSED_PAUSE)
                if len(seen) > 4 * (self.keys + PRIVATE_KEYS):
                    seen = {k: v for k, v in seen.items() if f"/g{gen}/" in k or f"/p{gen}/" in k}
        finally:
            conn.close()

    async def _watcher(self, proc: str, slot: int, glob: str) -> None:
        rng = random.Random(f"{self.seed}-{proc}")
        conn = Conn(self.cluster.addr(slot))
        nxt = self.start_rev + 1
        full = glob.endswith("/**")
        try:
            while not self.stopping:
                limit = 1000 if full else rng.choice([1, 10, 100, 1000])
                q = urllib.parse.urlencode({"glob": glob, "rev": nxt, "limit": limit, "timeout": WATCH_WAIT})
                op = await self._call(conn, proc, slot, WATCH, glob, "GET", f"/v1/watch?{q}", prec=nxt,
                                      timeout=WATCH_WAIT + self.client_timeout)
                if op is None:
                    await asyncio.sleep(0.2)
                    continue
                if op.outcome == "ok":
                    nxt = op.rev
                    await asyncio.sleep(rng.uniform(0.0, WATCH_PAUSE))
                elif op.code == "TOO_LATE":
                    # History older than the node keeps (it installed a
                    # snapshot, or this stream fell behind): a new run
                    # from where the node can answer.
                    try:
                        if not conn.open:
                            await conn.connect()
                        st, body = await conn.request("GET", "/v1/rev", timeout=2)
                        if st == 200:
                            nxt = max(nxt, body["rev"] + 1)
                    except (OSError, Timeout, asyncio.TimeoutError, asyncio.IncompleteReadError, HTTPError,
                            ValueError, KeyError, TypeError):
                        conn.close()
                    await asyncio.sleep(0.2)
                else:
                    await asyncio.sleep(0.1)
        finally:
            conn.close()


class LogFollowers:
    """Follow the event log of every node process the cluster starts.

    One follower per process (the cluster's ``all`` list is looked at every
    half second); each long-polls ``/v1/watch?glob=/**&rev=<next>`` on its
    node and keeps every event, from the run's first rev (or the oldest its
    node keeps, for a node that joined later) for as long as the node runs.
    A ``TOO_LATE`` ends a stretch and starts the next at the node's oldest
    rev. The node names of the logs are ``HOST:PORT`` and, for later
    stretches, ``HOST:PORT#2`` etc.
    """

    def __init__(self, cluster: Any, start_rev: int, loop: asyncio.AbstractEventLoop) -> None:
        self.cluster = cluster
        self.start_rev = start_rev
        self.loop = loop
        self.done: list[NodeLog] = []
        self.state: dict[str, dict] = {}  # addr -> {"events", "start", "next", "part"}
        self.tasks: dict[str, asyncio.Task] = {}
        self.finishing = False
        self.watcher: Optional[asyncio.Task] = None

    def start(self) -> None:
        self.watcher = asyncio.get_running_loop().create_task(self._watch_cluster())

    async def _watch_cluster(self) -> None:
        while not self.finishing:
            for node in list(self.cluster.all):
                if node.addr not in self.tasks and node.proc is not None:
                    self.tasks[node.addr] = asyncio.create_task(self._follow(node))
            await asyncio.sleep(0.5)

    def _close_stretch(self, addr: str) -> None:
        st = self.state[addr]
        if st["next"] - 1 >= st["start"]:
            name = addr if st["part"] == 1 else f"{addr}#{st['part']}"
            self.done.append(NodeLog(name, st["events"], st["start"], st["next"] - 1))
        st["part"] += 1
        st["events"] = []

    async def _follow(self, node: Any) -> None:
        addr = node.addr
        st = self.state[addr] = {"events": [], "start": self.start_rev + 1, "next": self.start_rev + 1, "part": 1}
        conn = Conn(addr)
        while True:
            if st.get("until") is not None and st["next"] > st["until"]:
                break
            if node.proc is None or node.proc.poll() is not None:
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
                    self._close_stretch(addr)
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
        self._close_stretch(addr)

    async def finish(self, ends: dict[str, int], seconds: float) -> list[NodeLog]:
        """Let each live node's follower reach its end rev, then stop all."""
        self.finishing = True
        if self.watcher is not None:
            self.watcher.cancel()
        for node in list(self.cluster.all):  # a node started just now
            if node.addr not in self.tasks and node.proc is not None and node.addr in ends:
                self.tasks[node.addr] = asyncio.create_task(self._follow(node))
        for addr, st in self.state.items():
            st["until"] = ends.get(addr, 0)
        for addr, task in self.tasks.items():
            if addr not in ends:
                self.state[addr]["until"] = 0  # not asked for: stop now
        done, pending = await asyncio.wait(list(self.tasks.values()), timeout=seconds)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            for addr, task in self.tasks.items():
                if task in pending and self.state[addr]["events"] is not None:
                    self._close_stretch(addr)
        return self.done
