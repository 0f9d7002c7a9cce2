"""The fault suite's thread workers (the default workload; ``--fast`` is
:mod:`tests.faults.fastload`): on every node, clients that set, CAS,
delete and read (``consistent=1``) keys of a generation that changes every
20 s, and watchers following globs from the run's first rev, resuming from
``next``. Every request is recorded (:mod:`tests.faults.clients`).
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.parse
from typing import Any, Optional

from tests.faults.clients import CLIENT_TIMEOUT, ClientThreads, http_call, recorded_call
from tests.faults.cluster import Cluster
from tests.faults.history import CAS, DELETE, READ, SET, WATCH, Recorder

WATCH_WAIT = 2  # the watch's own ``timeout`` argument

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
