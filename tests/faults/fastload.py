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
would carry them all), so the followers of :mod:`tests.faults.followers`
read every node process's log **during** the run through ``GET
/v1/watch?glob=/**`` and keep it in the runner: one
:class:`~tests.faults.history.NodeLog` per node process and contiguous
stretch (a follower told ``TOO_LATE``, e.g. after its node installed a
snapshot whose history starts later, starts a new stretch). Killed nodes'
logs are checked too, up to where their follower got. The keep-alive
connection is :mod:`tests.faults.keepalive`'s.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import urllib.parse
from typing import Any, Callable, Optional

from tests.faults.followers import LogFollowers
from tests.faults.history import CAS, DELETE, READ, SET, WATCH, NodeLog, Op, Recorder
from tests.faults.keepalive import Conn, HTTPError, Timeout

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
#: See :class:`Pacer`.
BURST = 0.5
#: A client whose node refused at once (``READONLY``: not a member) waits
#: this long before its next operation, instead of spinning on refusals.
REFUSED_PAUSE = 0.05
#: Pause between a watch stream's calls (0 to this), so that streams of the
#: shared keys ask for batches more often than for one event at a time.
WATCH_PAUSE = 0.05



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
