"""Does the lease simulation catch the bugs CONSENSUS.md §L's rules exist
against? Each mutant re-introduces one, by patching the product in this
process only (nothing is changed on disk), and the script counts the seeds
of :mod:`leasesim` that fail with it::

    cd tests && PYTHONPATH=.. /work/venv/bin/python leasesim_mutants.py [SEEDS] [MUTANT...]

The mutants:

- ``no-l4``: applying ``EXPIRE`` ends the lease whatever its basis (L4
  dropped).
- ``answer-on-receipt``: a keepalive is answered 200 when it arrives, while
  the lease is there, instead of once its ``RENEW`` is applied (L2 dropped;
  the RENEW is still proposed).
- ``no-drift``: timers wait ``ttl × 1.0`` instead of ``ttl × 1.02`` (L3's
  margin for clocks up to 1% fast).
- ``old-timer-start``: a node that installs a snapshot keeps, for each
  lease it already timed, the moment it started timing the old basis, and
  times the snapshot's newer basis from it (L3's restart dropped).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable, Iterator

from twisted.internet import defer

from doozer.node import leases as node_leases
from doozer.store import lease_verbs
from doozer.store.types import Outcome
import leasesim
import nodesim


def _no_l4() -> Callable[[], None]:
    real = lease_verbs.expire

    def expire(store: Any, m: Any) -> Outcome:
        lease = store.leases.get(m.lease)
        if lease is not None:
            m = dataclasses.replace(m, basis=lease.basis)  # as if its basis were current
        return real(store, m)

    lease_verbs.expire = expire  # type: ignore[assignment]
    return lambda: setattr(lease_verbs, "expire", real)


def _answer_on_receipt() -> Callable[[], None]:
    real = node_leases.LeaseTimers.keepalive

    def keepalive(self: Any, lease_id: str) -> "defer.Deferred[int]":
        real(self, lease_id).addErrback(lambda f: None)  # the RENEW still goes
        lease = self._node.store.leases.get(lease_id)
        if lease is None:
            return defer.fail(node_leases._gone(lease_id))
        return defer.succeed(lease.ttl)

    node_leases.LeaseTimers.keepalive = keepalive  # type: ignore[method-assign]
    return lambda: setattr(node_leases.LeaseTimers, "keepalive", real)


def _no_drift() -> Callable[[], None]:
    real = node_leases.DRIFT
    node_leases.DRIFT = 1.0
    return lambda: setattr(node_leases, "DRIFT", real)


def _old_timer_start() -> Callable[[], None]:
    real = node_leases.LeaseTimers.sync

    def sync(self: Any) -> None:
        table = self._node.store.leases
        if table is self._table:
            real(self)
            return
        old = dict(self._applied)
        real(self)  # every lease timed again from now ...
        for lease in table:  # ... but the bug keeps the old start
            if lease.id in old and old[lease.id][1] < self._applied[lease.id][1]:
                self._time(lease.id, lease.basis, lease.ttl, old[lease.id][1])

    node_leases.LeaseTimers.sync = sync  # type: ignore[method-assign]
    return lambda: setattr(node_leases.LeaseTimers, "sync", real)


MUTANTS: dict[str, Callable[[], Callable[[], None]]] = {
    "no-l4": _no_l4,
    "answer-on-receipt": _answer_on_receipt,
    "no-drift": _no_drift,
    "old-timer-start": _old_timer_start,
}


def failing_seeds(seeds: range, failed: list[tuple[int, str]]) -> Iterator[int]:
    """Run each seed (yielding it when done); the failing ones go to ``failed``."""
    for seed in seeds:
        try:
            leasesim.scenario(seed)
        except nodesim.Violation as e:
            failed.append((seed, str(e).split("\n", 1)[0]))
        yield seed


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv else 1000
    names = argv[1:] or list(MUTANTS)
    for name in names:
        undo = MUTANTS[name]()
        started = time.process_time()
        failed = []
        try:
            for done, found in enumerate(failing_seeds(range(count), failed), 1):
                if done % 50 == 0:
                    print(f"  {name}: {len(failed)} of the first {done} seeds fail", flush=True)
        finally:
            undo()
        kinds: dict[str, int] = {}
        for _, why in failed:
            kind = why.split(": ", 2)[1] if why.count(": ") >= 2 else why
            kinds[kind] = kinds.get(kind, 0) + 1
        print(f"{name}: {len(failed)} of {count} seeds fail {kinds} "
              f"({time.process_time() - started:.0f} s cpu); first: {[s for s, _ in failed[:12]]}")
        for seed, why in failed[:2]:
            print(f"    {why}")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
