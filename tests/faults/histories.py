"""Histories for the fault-suite checkers' tests (``tests/faults/test_*check*.py``).

Builders of hand-made ops (times are plain numbers), :func:`simulate`, a
correct sequential store with random concurrency windows, its node logs
and watch streams, and :func:`assert_ok` / :func:`assert_fail`.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

from .history import CAS, DELETE, FAIL, INDETERMINATE, OK, READ, SET, WATCH, Event, NodeLog, Op
from .results import CheckResult, Verdict
from .watchcheck import compile_glob


# ---------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------


_ids = itertools.count()


def op(
    kind: str,
    key: str,
    t0: float,
    t1: float | None,
    outcome: str = OK,
    *,
    value: bytes | str | None = None,
    prec: int | None = None,
    code: str | None = None,
    rev: int | None = None,
    process: int | str | None = None,
    events: list[Event] | None = None,
    stream: str | None = None,
) -> Op:
    """One op; each gets its own process unless one is named."""
    i = next(_ids)
    return Op(
        i,
        i if process is None else process,
        kind,
        key,
        t0,
        t1,
        outcome,
        value=value,
        prec=prec,
        code=code,
        rev=rev,
        events=events,
        stream=stream,
    )


def put(key: str, t0: float, t1: float | None, value: str, rev: int | None = None, **kw) -> Op:
    """An acknowledged (or other outcome via ``outcome=``) unconditional set."""
    return op(SET, key, t0, t1, kw.pop("outcome", OK), value=value, rev=rev, **kw)


def get(key: str, t0: float, t1: float, value: str | None, rev: int | None = None) -> Op:
    """A consistent read: ``value`` None means it answered NOENT."""
    if value is None:
        return op(READ, key, t0, t1, FAIL, code="NOENT", rev=0)
    return op(READ, key, t0, t1, OK, value=value, rev=rev)


def watch_call(glob: str, asked: int, events: list[Event], nxt: int, t: float, stream: str = "s") -> Op:
    """One acknowledged watch call of stream ``stream``."""
    return op(WATCH, glob, t, t + 0.5, OK, prec=asked, rev=nxt, events=events, process="w", stream=stream)


def assert_ok(result: CheckResult) -> None:
    """The result is a definite pass (with the problems shown otherwise)."""
    assert result.verdict is Verdict.OK, result.summary()


def assert_fail(result: CheckResult, *words: str) -> None:
    """The result is a failure whose problems mention every word."""
    assert result.verdict is Verdict.FAIL, result.summary()
    text = "\n".join(result.problems)
    for w in words:
        assert w in text, result.summary()


MULTI = [
    Event(1, "/a", "set", "x"),
    Event(2, "/ctl/lease/L", "del"),
    Event(2, "/e/k", "del"),
    Event(3, "/a", "set", "y"),
]


# ---------------------------------------------------------------------------
# Simulation of a correct store
# ---------------------------------------------------------------------------


@dataclass
class Sim:
    """A simulated run: ops, the true log, and the last applied rev."""

    ops: list[Op]
    log: list[Event]
    rev: int
    keys: list[str] = field(default_factory=list)


def simulate(
    seed: int,
    n_procs: int = 4,
    n_ops: int = 40,
    n_keys: int = 2,
    p_indet: float = 0.1,
    p_late: float = 0.3,
) -> Sim:
    """Run a correct sequential store under random concurrency.

    Each process issues ops one after another; each op takes effect at a
    random point inside its [invoke, complete] window.  An op may come back
    indeterminate: then it took effect (possibly after its completion time,
    even after every other op) or never.  Revs are global and taken by every
    write, failed or not, and by random no-ops.
    """
    rng = random.Random(seed)
    keys = [f"/k{i}" for i in range(n_keys)]
    store: dict[str, tuple[bytes, int]] = {}
    log: list[Event] = []
    rev = 0
    ops: list[Op] = []
    seen: dict[tuple[int, str], int] = {}  # (process, key) -> last file rev seen
    counter = itertools.count()
    # heap of (time, seq, action, payload)
    heap: list[tuple[float, int, str, object]] = []
    issued = 0
    for p in range(n_procs):
        heapq.heappush(heap, (rng.uniform(0, 1), next(counter), "invoke", p))

    def apply(o: Op) -> tuple[str, str | None, int | None, bytes | None]:
        nonlocal rev
        rev += rng.choice([0, 0, 0, 1, 2])  # other clients' revs / no-ops
        cur = store.get(o.key)
        frev = cur[1] if cur else 0
        if o.kind == READ:
            return (OK, None, frev, cur[0]) if cur else (FAIL, "NOENT", 0, None)
        rev += 1
        if o.precondition >= 0 and frev > o.precondition:
            return FAIL, "REV_MISMATCH", frev, None
        if o.kind == DELETE:
            if cur is None:
                return FAIL, "NOENT", None, None
            del store[o.key]
            log.append(Event(rev, o.key, "del"))
            return OK, None, rev, None
        assert o.value is not None
        store[o.key] = (o.value, rev)
        log.append(Event(rev, o.key, "set", o.value))
        return OK, None, rev, None

    results: dict[int, tuple[str, str | None, int | None, bytes | None]] = {}
    while heap:
        t, _, action, payload = heapq.heappop(heap)
        if action == "invoke":
            p = payload
            assert isinstance(p, int)
            if issued >= n_ops:
                continue
            issued += 1
            key = rng.choice(keys)
            kind = rng.choice([SET, SET, CAS, CAS, DELETE, READ, READ, READ])
            value = f"p{p}-{issued}" if kind in (SET, CAS) else None
            prec = None
            if kind == CAS or (kind == DELETE and rng.random() < 0.5):
                prec = rng.choice([0, seen.get((p, key), 0), seen.get((p, key), 0) + rng.randint(-2, 3)])
                prec = max(prec, 0)
            o = Op(next(counter), p, kind, key, t, None, INDETERMINATE, value=value, prec=prec)
            ops.append(o)
            dur = rng.expovariate(1.0)
            done = t + dur
            indet = rng.random() < p_indet
            if not indet:
                heapq.heappush(heap, (rng.uniform(t, done), next(counter), "apply", o))
            elif kind != READ and rng.random() < 0.6:
                late = rng.random() < p_late
                when = rng.uniform(done, done + 20) if late else rng.uniform(t, done)
                heapq.heappush(heap, (when, next(counter), "apply", o))
            heapq.heappush(heap, (done, next(counter), "complete", (o, indet)))
        elif action == "apply":
            assert isinstance(payload, Op)
            results[payload.id] = apply(payload)
        else:
            o, indet = payload  # type: ignore[misc]
            o.complete = t
            if indet:
                o.outcome = INDETERMINATE
                o.code = "UNAVAILABLE"
                if o.kind == READ:
                    o.value = None
            else:
                outcome, code, r, v = results[o.id]
                o.outcome, o.code, o.rev = outcome, code, r
                if o.kind == READ:
                    o.value = v
                if r:
                    seen[(o.process, o.key)] = r
            heapq.heappush(heap, (t + rng.expovariate(5.0), next(counter), "invoke", o.process))
    return Sim(ops, log, rev, keys)


def sim_logs(sim: Sim, nodes: int = 3) -> list[NodeLog]:
    """Node dumps of a simulated run: node 0 complete, the others lagging
    (a prefix) or pruned (a suffix)."""
    logs = [NodeLog("n0", list(sim.log), 1, sim.rev)]
    for i in range(1, nodes):
        if i % 2:
            end = max(0, sim.rev - i * 3)
            logs.append(NodeLog(f"n{i}", [e for e in sim.log if e.rev <= end], 1, end))
        else:
            start = min(sim.rev, 1 + i * 3)
            logs.append(NodeLog(f"n{i}", [e for e in sim.log if e.rev >= start], start, sim.rev))
    return logs


def sim_watch(sim: Sim, glob: str, start: int, limits: list[int]) -> list[Op]:
    """A correct watch stream over the simulated log, resumed from ``next``."""
    match = compile_glob(glob)
    evs = [e for e in sim.log if match(e.path) and e.rev >= start]
    calls = []
    asked = start
    t = 1000.0
    for lim in limits:
        got = evs[:lim]
        evs = evs[lim:]
        nxt = got[-1].rev + 1 if got else max(asked, sim.rev + 1)
        calls.append(op(WATCH, glob, t, t + 1, OK, prec=asked, rev=nxt, events=got, process="w"))
        asked = nxt
        t += 2
    return calls
