"""Lease holders for the fault suite (issue 19): an election under the nemesis.

Each holder is a thread of the runner that loops: grant a lease (ttl 2, 3 or
4 s) through a random node, try to take the election key with it (a
``POST /v1/txn`` comparing the key's rev with 0 and setting it with the
lease, or now and then a ``PUT ?rev=0&lease=<id>``), renew it every
ttl/4..ttl/3 through a random node (any member takes keepalives), and after
1..12 s either revoke it or go silent: stop renewing and read
``/ctl/lease/<id>`` with ``consistent=1`` every 0.25 s until it is gone. A
lease whose keepalive answers ``NOENT``, or whose keepalives stay unanswered
past the last answered one's send + ttl, is given up and a new one granted.
Every request is a :class:`~tests.faults.leaseops.LeaseOp` on the
recorder's clock.

Watchers, one per node slot, follow ``/ctl/lease/*`` from the run's first
rev (recorded as ordinary watch calls, so the watch checker checks them
against the logs too): the time each call's answer arrived bounds from
above when the lease ends it reports were applied, which is what the G1
check (:mod:`tests.faults.leasecheck`) compares with the keepalives.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.parse
from typing import Any, Callable, Optional

from .clients import Call, ClientThreads, recorded_call
from .history import OK, WATCH, Op, Recorder
from .leaseops import GRANT, KEEPALIVE, PROBE, REVOKE, SILENCE, TAKEOVER, LeaseLog, LeaseOp

#: Lease ttls (seconds): short, so that leases end often within a run, and
#: below most pauses and cuts of the nemesis (0.5-8 s).
TTLS = (2, 3, 4)
#: How long a holder keeps renewing before it revokes or goes silent.
HOLD = (1.0, 12.0)
#: Share of tenures that end in silence (the rest: revoke).
SILENT = 0.5
#: While the nemesis is calm: the chance that a tenure ends after each
#: answered keepalive, and the share of ends in silence.
CALM_END, CALM_SILENT = 0.3, 0.9
#: Seconds between two probes of a silent holder's lease.
PROBE_EVERY = 0.25
#: A silent holder stops probing this long after G2's bound
#: (ttl × 1.02 + 2 s) if its lease is still there.
PROBE_BEYOND = 10.0
WATCH_WAIT = 2


class LeaseWorkload(ClientThreads):
    """``holders`` lease holders contending for ``key``, and one
    ``/ctl/lease/*`` watcher per node slot.

    :param call: :func:`tests.faults.clients.http_call`, or a stand-in.
    :param calm: whether the nemesis has no fault going on now (the cluster
        was healthy since the last one). While it is, holders end their
        tenures sooner and mostly in silence, so that some silent leases
        fall in the fault-free windows where G2 is judged; this only
        chooses what is tried, never what is checked.
    """

    def __init__(self, cluster: Any, rec: Recorder, leases: LeaseLog, seed: int, holders: int,
                 key: str, start_rev: int, call: Call, calm: Callable[[], bool] = lambda: False) -> None:
        super().__init__()
        self.cluster = cluster
        self.rec = rec
        self.leases = leases
        self.seed = seed
        self.holders = holders
        self.key = key
        self.start_rev = start_rev
        self.call = call
        self.calm = calm

    def start(self) -> None:
        for w in range(self.holders):
            self.threads.append(threading.Thread(target=self._holder, args=(w,), daemon=True, name=f"lease{w}"))
        for s in range(self.cluster.n):
            self.threads.append(threading.Thread(target=self._watcher, args=(s,), daemon=True, name=f"lw{s}"))
        super().start()

    # -- requests -----------------------------------------------------------

    def _request(self, proc: str, kind: str, lease: Optional[str], slot: int, method: str, path: str,
                 body: Optional[bytes] = None, timeout: float = 4.0, **extra: Any) -> Optional[LeaseOp]:
        """One lease request; None when no connection opened (nothing sent)."""
        addr = self.cluster.addr(slot)
        return recorded_call(self.call, addr, method, path, body, timeout,
                             lambda: self.leases.invoke(proc, kind, lease, node=addr, **extra),
                             self.leases.lost, self.leases.answer)

    # -- a holder -----------------------------------------------------------

    def _holder(self, w: int) -> None:
        rng = random.Random(f"{self.seed}-lease-{w}")
        proc = f"lease{w}"
        n = self.cluster.n
        tries = 0
        while not self.stop.is_set():
            ttl = rng.choice(TTLS)
            g = self._request(proc, GRANT, None, rng.randrange(n), "POST", "/v1/lease",
                              json.dumps({"ttl": ttl}).encode(), ttl=ttl)
            if g is None or g.outcome != OK or not g.lease:
                self._sleep(0.2)
                continue
            lease = g.lease
            believed = g.invoke + ttl  # alive until then, as far as this holder knows (G1)
            holder = lost = False
            end_at = time.monotonic() + rng.uniform(*HOLD)
            while not self.stop.is_set() and time.monotonic() < end_at:
                if not holder:
                    tries += 1
                    t = self._takeover(proc, rng, lease, f"{proc}/{lease}/{tries}")
                    if t is not None and t.outcome == OK:
                        holder = True
                    elif t is not None and t.code == "NOENT":
                        lost = True  # the lease is gone
                        break
                if not self._sleep(rng.uniform(0.25, 1 / 3) * ttl):
                    return
                k = self._request(proc, KEEPALIVE, lease, rng.randrange(n), "POST",
                                  f"/v1/lease/{lease}/keepalive", timeout=ttl / 2 + 0.5)
                if k is not None and k.outcome == OK:
                    believed = k.invoke + ttl
                    if self.calm() and rng.random() < CALM_END:
                        break  # end this tenure now, while no fault is going on
                elif k is not None and k.code == "NOENT":
                    lost = True
                    break
                elif time.monotonic() >= believed:
                    lost = True  # renewals unanswered for a ttl: it may be gone
                    break
            if lost or self.stop.is_set():
                continue
            if rng.random() >= (CALM_SILENT if self.calm() else SILENT):
                self._request(proc, REVOKE, lease, rng.randrange(n), "DELETE", f"/v1/lease/{lease}")
                continue
            self._silent(proc, rng, lease, ttl)

    def _takeover(self, proc: str, rng: random.Random, lease: str, value: str) -> Optional[LeaseOp]:
        """Take the election key if nobody holds it (compare rev 0)."""
        slot = rng.randrange(self.cluster.n)
        if rng.random() < 0.2:
            q = urllib.parse.urlencode({"rev": 0, "lease": lease})
            return self._request(proc, TAKEOVER, lease, slot, "PUT", f"/v1/store{self.key}?{q}",
                                 value.encode(), value=value)
        body = {"compare": [{"path": self.key, "rev": 0}],
                "ops": [{"op": "set", "path": self.key, "value": value, "lease": lease}]}
        return self._request(proc, TAKEOVER, lease, slot, "POST", "/v1/txn",
                             json.dumps(body).encode(), value=value)

    def _silent(self, proc: str, rng: random.Random, lease: str, ttl: int) -> None:
        """Stop renewing; read the lease (``consistent=1``) until it is gone."""
        quiet = self.leases.mark(proc, SILENCE, lease, ttl=ttl)
        until = quiet.invoke + ttl * 1.02 + 2 + PROBE_BEYOND
        path = f"/v1/store/ctl/lease/{lease}?consistent=1"
        while time.monotonic() < until and self._sleep(PROBE_EVERY):
            p = self._request(proc, PROBE, lease, rng.randrange(self.cluster.n), "GET", path)
            if p is not None and p.code == "NOENT":
                return

    # -- watchers -------------------------------------------------------------

    def _watcher(self, slot: int) -> None:
        """Follow ``/ctl/lease/*`` on the slot's node, resuming from ``next``."""
        proc = f"leasewatch{slot}"
        glob = "/ctl/lease/*"
        nxt = self.start_rev + 1
        while not self.stop.is_set():
            q = urllib.parse.urlencode({"glob": glob, "rev": nxt, "limit": 1000, "timeout": WATCH_WAIT})

            def lost(op: Op, error: str) -> None:
                self.rec.indeterminate(op, error)

            answered = recorded_call(self.call, self.cluster.addr(slot), "GET", f"/v1/watch?{q}",
                                     None, WATCH_WAIT + 6,
                                     lambda: self.rec.invoke(proc, WATCH, glob, prec=nxt), lost,
                                     lambda op, status, data: (self.rec.from_http(op, status, data), data))
            if answered is None:  # no answer: nothing sent, or lost on the way
                self._sleep(0.2)
                continue
            op, data = answered
            if op.outcome == OK and op.rev is not None:
                nxt = op.rev
            elif op.code == "TOO_LATE":  # a node that joined by snapshot: from its oldest rev
                oldest = data.get("oldest") if isinstance(data, dict) else None
                nxt = max(nxt, oldest) if isinstance(oldest, int) else nxt
                self._sleep(0.2)
            else:
                self._sleep(0.1)
