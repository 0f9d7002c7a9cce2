"""Unit tests of the fault-suite checkers, on hand-made and simulated histories.

No cluster runs here: histories are written out by hand (times are plain
numbers) or produced by :func:`simulate`, a correct sequential store with
random concurrency windows.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .checker import (
    CheckResult,
    CommonLog,
    Verdict,
    check_history,
    check_linearizability,
    check_logs,
    check_watches,
    compile_glob,
    main,
)
from .history import (
    CAS,
    DELETE,
    FAIL,
    INDETERMINATE,
    OK,
    READ,
    SET,
    WATCH,
    Event,
    History,
    NodeLog,
    Op,
    Recorder,
)

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


def lin(*ops: Op, **kw) -> CheckResult:
    """Linearizability of the given ops."""
    return check_linearizability(list(ops), **kw)


def assert_lin_fails(*ops: Op, words: tuple[str, ...] = (), search_words: tuple[str, ...] = ()) -> None:
    """The ops fail the linearizability check, both with the quick checks
    (mentioning ``words``) and by the search alone (mentioning
    ``search_words``)."""
    assert_fail(lin(*ops), *words)
    assert_fail(lin(*ops, quick=False), *search_words)


def assert_ok(result: CheckResult) -> None:
    """The result is a definite pass (with the problems shown otherwise)."""
    assert result.verdict is Verdict.OK, result.summary()


def assert_fail(result: CheckResult, *words: str) -> None:
    """The result is a failure whose problems mention every word."""
    assert result.verdict is Verdict.FAIL, result.summary()
    text = "\n".join(result.problems)
    for w in words:
        assert w in text, result.summary()


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


# ---------------------------------------------------------------------------
# Linearizability: histories that must pass
# ---------------------------------------------------------------------------


def test_sequential_history_passes() -> None:
    """A plain sequence of sets, reads, a CAS and a delete is linearizable."""
    assert_ok(
        lin(
            put("/a", 0, 1, "x", 3),
            get("/a", 2, 3, "x", 3),
            op(CAS, "/a", 4, 5, value="y", prec=3, rev=7),
            get("/a", 6, 7, "y", 7),
            op(DELETE, "/a", 8, 9, rev=9),
            get("/a", 10, 11, None),
        )
    )


def test_concurrent_writes_with_reads_of_either_order_pass() -> None:
    """Overlapping writes and reads pass when some order explains every answer."""
    assert_ok(
        lin(
            put("/a", 0, 10, "x", 5),
            put("/a", 1, 9, "y", 6),
            get("/a", 2, 8, "x", 5),
            get("/a", 3, 11, "y", 6),
            get("/a", 0.5, 1.5, None),
        )
    )


def test_reads_overlapping_a_write_may_see_old_or_new() -> None:
    """Two reads concurrent with a write may see the old and the new value, in either real-time order."""
    assert_ok(
        lin(
            put("/a", 0, 1, "old", 2),
            put("/a", 2, 10, "new", 4),
            get("/a", 3, 4, "new", 4),
            get("/a", 3.5, 9, "old", 2),  # overlaps the first read: may be ordered before it
        )
    )


def test_writes_without_returned_revs_pass_in_any_valid_order() -> None:
    """Without revs, concurrent writes are ordered by what later reads saw."""
    assert_ok(
        lin(
            put("/a", 0, 5, "x"),
            put("/a", 0, 5, "y"),
            put("/a", 0, 5, "z"),
            get("/a", 6, 7, "y"),
        )
    )


def test_indeterminate_write_that_never_happened_passes() -> None:
    """An indeterminate write no one observed may simply not have happened."""
    assert_ok(
        lin(
            put("/a", 0, 1, "x", 3),
            put("/a", 2, 3, "lost", outcome=INDETERMINATE),
            get("/a", 4, 5, "x", 3),
            get("/a", 6, 7, "x", 3),
        )
    )


def test_indeterminate_write_observed_later_passes() -> None:
    """An indeterminate write seen by a later read took effect, at the rev the read reports."""
    assert_ok(
        lin(
            put("/a", 0, 1, "x", 3),
            put("/a", 2, 3, "maybe", outcome=INDETERMINATE, code="UNAVAILABLE"),
            get("/a", 4, 5, "maybe", 9),
            op(CAS, "/a", 6, 7, value="z", prec=9, rev=12),
        )
    )


def test_indeterminate_write_may_take_effect_after_its_timeout() -> None:
    """An indeterminate write may commit after later acknowledged writes (after its own timeout)."""
    assert_ok(
        lin(
            put("/a", 0, 1, "late", outcome=INDETERMINATE),
            put("/a", 2, 3, "y", 10),
            get("/a", 4, 5, "y", 10),
            get("/a", 6, 7, "late", 14),
        )
    )


def test_indeterminate_write_never_completed_passes() -> None:
    """An op with no completion time at all is an indeterminate op that may be pending forever."""
    assert_ok(
        lin(
            put("/a", 0, None, "never", outcome=INDETERMINATE),
            get("/a", 1, 2, None),
            put("/a", 3, 4, "x", 8),
            get("/a", 5, 6, "x", 8),
        )
    )


def test_rev_mismatch_explained_by_unseen_indeterminate_write() -> None:
    """A REV_MISMATCH naming a rev no acknowledged write took is explained by an indeterminate write."""
    assert_ok(
        lin(
            put("/a", 0, 1, "x", 3),
            put("/a", 2, 3, "ghost", outcome=INDETERMINATE),
            op(CAS, "/a", 4, 5, FAIL, value="y", prec=3, code="REV_MISMATCH", rev=8),
        )
    )


def test_cas_semantics_pass() -> None:
    """Create-if-missing, CAS at the current rev and a REV_MISMATCH with the current rev all pass."""
    assert_ok(
        lin(
            op(CAS, "/a", 0, 1, value="x", prec=0, rev=2),
            op(CAS, "/a", 2, 3, FAIL, value="y", prec=0, code="REV_MISMATCH", rev=2),
            op(CAS, "/a", 4, 5, FAIL, value="y", prec=1, code="REV_MISMATCH", rev=2),
            op(CAS, "/a", 6, 7, value="z", prec=5, rev=8),  # rev 2 <= 5
            op(DELETE, "/a", 8, 9, FAIL, prec=3, code="REV_MISMATCH", rev=8),
            op(DELETE, "/a", 10, 11, prec=8, rev=12),
            op(DELETE, "/a", 12, 13, FAIL, code="NOENT"),
            op(CAS, "/a", 14, 15, value="w", prec=0, rev=20),
        )
    )


def test_initial_state_is_used() -> None:
    """A key that existed before the history starts from its given value and rev."""
    ops = [get("/a", 0, 1, "before", 4), op(CAS, "/a", 2, 3, value="x", prec=4, rev=9)]
    assert_ok(lin(*ops, initial={"/a": (b"before", 4)}))
    assert_fail(lin(*ops))


def test_irrelevant_failures_and_indeterminate_reads_are_ignored() -> None:
    """Failed ops with codes that imply no effect, and reads without an answer, constrain nothing."""
    assert_ok(
        lin(
            put("/a", 0, 1, "x", 3),
            op(SET, "/a", 2, 3, FAIL, value="bad", code="TOO_LARGE"),
            op(READ, "/a", 4, 5, INDETERMINATE),
            get("/a", 6, 7, "x", 3),
        )
    )


def test_keys_are_checked_independently() -> None:
    """Interleaved ops on several keys pass when each key's ops do."""
    assert_ok(
        lin(
            put("/a", 0, 2, "a1", 1),
            put("/b", 1, 3, "b1", 2),
            get("/a", 4, 5, "a1", 1),
            get("/b", 4, 5, "b1", 2),
        )
    )


# ---------------------------------------------------------------------------
# Linearizability: histories that must fail
# ---------------------------------------------------------------------------


def test_stale_read_fails() -> None:
    """A read that starts after a write was acknowledged must not return the older value."""
    assert_lin_fails(
        put("/a", 0, 1, "old", 3),
        put("/a", 2, 3, "new", 5),
        get("/a", 4, 5, "old", 3),
        words=("stale read", "saw rev 3"),
        search_words=("key /a: not linearizable",),
    )


def test_stale_read_without_revs_fails() -> None:
    """A stale read is caught by values alone when revs are not recorded."""
    assert_lin_fails(put("/a", 0, 1, "old"), put("/a", 2, 3, "new"), get("/a", 4, 5, "old"))


def test_lost_acknowledged_write_fails() -> None:
    """A write acknowledged before a read started must be visible to it."""
    assert_lin_fails(put("/a", 0, 1, "x", 4), get("/a", 2, 3, None), words=("lost write",))


def test_noent_read_after_a_possible_delete_passes() -> None:
    """A read may find the file missing after a set when a delete (even an indeterminate one) may lie between."""
    assert_ok(lin(put("/a", 0, 1, "x", 4), op(DELETE, "/a", 2, 3, INDETERMINATE), get("/a", 4, 5, None)))
    assert_ok(lin(put("/a", 0, 1, "x", 4), op(DELETE, "/a", 0.5, 3, rev=6), get("/a", 4, 5, None)))


def test_lost_write_despite_an_earlier_delete_fails() -> None:
    """A delete ordered (by rev) before the set cannot explain a later NOENT."""
    assert_lin_fails(
        op(DELETE, "/a", 0, 2, rev=3),
        put("/a", 0.5, 1, "x", 5),
        get("/a", 4, 5, None),
        words=("lost write",),
    )


def test_read_of_value_never_written_fails() -> None:
    """A read may only return a value some write wrote."""
    assert_lin_fails(put("/a", 0, 1, "x", 4), get("/a", 2, 3, "never", 4), words=("no write wrote",))


def test_read_of_failed_write_value_fails() -> None:
    """A write that failed its precondition wrote nothing a read could see."""
    assert_fail(
        lin(
            put("/a", 0, 1, "x", 4),
            op(CAS, "/a", 2, 3, FAIL, value="y", prec=1, code="REV_MISMATCH", rev=4),
            get("/a", 4, 5, "y", 6),
        )
    )


def test_cas_that_should_have_failed_fails() -> None:
    """A CAS whose precondition rev is below the file's acknowledged rev must not succeed."""
    assert_fail(
        lin(
            put("/a", 0, 1, "x", 3),
            put("/a", 2, 3, "y", 5),
            op(CAS, "/a", 4, 5, value="z", prec=3, rev=7),
        )
    )


def test_create_over_existing_file_fails() -> None:
    """rev=0 (create) must not succeed when the file exists."""
    assert_fail(lin(put("/a", 0, 1, "x", 3), op(CAS, "/a", 2, 3, value="y", prec=0, rev=5)))


def test_rev_mismatch_with_wrong_current_rev_fails() -> None:
    """A REV_MISMATCH must report the file's current rev."""
    assert_fail(
        lin(put("/a", 0, 1, "x", 3), op(CAS, "/a", 2, 3, FAIL, value="y", prec=1, code="REV_MISMATCH", rev=4))
    )


def test_rev_mismatch_when_precondition_held_fails() -> None:
    """A REV_MISMATCH whose precondition held (file rev <= R) is wrong."""
    assert_fail(
        lin(put("/a", 0, 1, "x", 3), op(CAS, "/a", 2, 3, FAIL, value="y", prec=3, code="REV_MISMATCH", rev=3))
    )


def test_delete_of_missing_file_succeeding_fails() -> None:
    """Deleting a file that does not exist must be NOENT, not success."""
    assert_fail(lin(op(DELETE, "/a", 0, 1, rev=3)))


def test_noent_delete_of_existing_file_fails() -> None:
    """A delete answering NOENT while the file exists is wrong."""
    assert_fail(lin(put("/a", 0, 1, "x", 3), op(DELETE, "/a", 2, 3, FAIL, code="NOENT")))


def test_write_rev_not_above_previous_write_fails() -> None:
    """A later write on the same key must get a higher rev."""
    assert_fail(lin(put("/a", 0, 1, "x", 5), put("/a", 2, 3, "y", 4)), "rev order")


def test_read_with_wrong_file_rev_fails() -> None:
    """A read must report the rev of the write it sees."""
    assert_fail(lin(put("/a", 0, 1, "x", 5), get("/a", 2, 3, "x", 6)))


def test_read_from_the_future_fails() -> None:
    """A read cannot see a write invoked after it completed."""
    assert_fail(lin(get("/a", 0, 1, "x", 5), put("/a", 2, 3, "x", 5)))


def test_rev_order_across_keys_fails() -> None:
    """A write acknowledged before another is invoked must have the lower global rev, across keys."""
    assert_fail(lin(put("/a", 0, 1, "x", 10), put("/b", 2, 3, "y", 7)), "rev order")


def test_duplicate_rev_across_keys_fails() -> None:
    """One global rev cannot be acknowledged to two writes."""
    assert_fail(lin(put("/a", 0, 1, "x", 10), put("/b", 0, 1, "y", 10)), "two writes")


def test_read_reporting_other_keys_rev_fails() -> None:
    """A read's file rev cannot be the rev of a write to another key."""
    assert_fail(lin(put("/a", 0, 1, "x", 10), put("/b", 0, 1, "x", 11), get("/b", 2, 3, "x", 10)), "belongs to")


def test_budget_exhaustion_is_unknown_not_a_hang() -> None:
    """When the search runs out of steps the verdict is unknown, with the reason."""
    ops = [put("/a", 0, 10, f"v{i}") for i in range(12)] + [get("/a", 11, 12, "v0")]
    result = lin(*ops, max_steps=5)
    assert result.verdict is Verdict.UNKNOWN, result.summary()
    assert "budget exhausted" in result.summary()


# ---------------------------------------------------------------------------
# Linearizability: simulated histories
# ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    n_procs=st.integers(1, 8),
    n_ops=st.integers(0, 80),
    n_keys=st.integers(1, 3),
    p_indet=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_simulated_correct_histories_are_linearizable(
    seed: int, n_procs: int, n_ops: int, n_keys: int, p_indet: float
) -> None:
    """Any history of a correct sequential store under random concurrency checks as linearizable."""
    sim = simulate(seed, n_procs, n_ops, n_keys, p_indet)
    assert_ok(check_linearizability(sim.ops))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), which=st.integers(0, 10**6), drop_rev=st.booleans())
def test_simulated_history_with_a_corrupted_read_fails(seed: int, which: int, drop_rev: bool) -> None:
    """Changing one acknowledged read to a value never written makes a simulated history fail, quick checks or not."""
    sim = simulate(seed, n_procs=4, n_ops=40, n_keys=2, p_indet=0.2)
    reads = [o for o in sim.ops if o.kind == READ and o.outcome == OK]
    if not reads:
        return
    victim = reads[which % len(reads)]
    victim.value = b"never written"
    if drop_rev:
        victim.rev = None
    assert_fail(check_linearizability(sim.ops), "no write wrote")
    assert_fail(check_linearizability(sim.ops, quick=False), "not linearizable")


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), which=st.integers(0, 10**6))
def test_simulated_history_with_an_injected_stale_read_fails(seed: int, which: int) -> None:
    """A read returning a value overwritten before it began makes a history fail, quick checks or not."""
    sim = simulate(seed, n_procs=4, n_ops=60, n_keys=2, p_indet=0.2)
    writes = [o for o in sim.ops if o.kind in (SET, CAS) and o.outcome == OK]
    stale = []  # (read, older write) where a newer write completed before the read began
    for r in (o for o in sim.ops if o.kind == READ and o.outcome == OK):
        for w2 in writes:
            if w2.key == r.key and w2.complete < r.invoke:
                stale += [(r, w1) for w1 in writes if w1.key == r.key and w1.rev < w2.rev]
    if not stale:
        return
    read, old = stale[which % len(stale)]
    read.value, read.rev = old.value, old.rev
    assert_fail(check_linearizability(sim.ops), "stale read")
    assert_fail(check_linearizability(sim.ops, quick=False), "not linearizable")


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), which=st.integers(0, 10**6), how=st.sampled_from(["drop", "dup", "swap"]))
def test_simulated_watch_stream_with_a_fault_fails(seed: int, which: int, how: str) -> None:
    """Dropping, duplicating or swapping an event of a correct watch stream makes it fail."""
    sim = simulate(seed, n_procs=3, n_ops=40, n_keys=2, p_indet=0.0)
    calls = sim_watch(sim, "/**", 1, [4, 1000])
    events = [e for c in calls for e in c.events or []]
    if len(events) < 2:
        return
    call = calls[0] if len(calls[0].events or []) >= 2 else calls[1]
    evs = call.events or []
    i = which % (len(evs) - 1)
    if how == "drop":
        del evs[i]  # a gap (next unchanged, or the last event lost)
    elif how == "dup":
        evs.insert(i, evs[i])
    else:
        evs[i], evs[i + 1] = evs[i + 1], evs[i]
    assert_fail(check_watches(calls, CommonLog.from_logs(sim_logs(sim))))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_simulated_logs_and_watches_pass(seed: int) -> None:
    """Logs and watch streams of a correct simulated run pass, with the full history check."""
    sim = simulate(seed, n_procs=5, n_ops=60, n_keys=3)
    watches = sim_watch(sim, "/**", 1, [3, 1, 5, 1000, 10]) + sim_watch(sim, "/k?", 2, [2, 2, 1000])
    hist = History(sim.ops + watches, sim_logs(sim))
    report = check_history(hist)
    assert report.ok, report.summary()


@pytest.mark.parametrize(
    "n_procs, n_keys, p_indet",
    [(60, 20, 0.02), (100, 10, 0.1), (100, 10, 0.3), (500, 10, 0.1)],
)
def test_ten_thousand_op_history_checks_quickly(n_procs: int, n_keys: int, p_indet: float) -> None:
    """A 10,000-op history with ~5-50 clients per key and indeterminate writes checks as linearizable in seconds."""
    sim = simulate(7, n_procs=n_procs, n_ops=10_000, n_keys=n_keys, p_indet=p_indet)
    started = time.monotonic()
    result = check_linearizability(sim.ops, time_limit=120)
    elapsed = time.monotonic() - started
    assert_ok(result)
    assert result.info["ops"] > 8000  # all but the indeterminate reads
    assert elapsed < 30, elapsed


@pytest.mark.parametrize("p_indet", [0.02, 0.3])
def test_ten_thousand_op_history_with_a_future_read_fails_quickly(p_indet: float) -> None:
    """A read of a write invoked after the read completed, deep in a 10,000-op history, is found by the search."""
    sim = simulate(11, n_procs=100, n_ops=10_000, n_keys=10, p_indet=p_indet)
    reads = [o for o in sim.ops if o.kind == READ and o.outcome == OK]
    victim = reads[len(reads) * 2 // 3]
    later = [o for o in sim.ops if o.kind in (SET, CAS) and o.outcome == OK and o.key == victim.key]
    future = min((o for o in later if o.invoke > victim.complete), key=lambda o: o.invoke)
    victim.value, victim.rev = future.value, future.rev
    started = time.monotonic()
    result = check_linearizability(sim.ops, time_limit=120)
    assert_fail(result, f"key {victim.key}: not linearizable")
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------------------
# Node logs
# ---------------------------------------------------------------------------

LOG = [Event(2, "/a", "set", "x"), Event(3, "/b", "set", "y"), Event(5, "/a", "del"), Event(6, "/a", "set", "z")]


def test_identical_and_prefix_logs_pass() -> None:
    """Logs that agree, one lagging (prefix) and one pruned (suffix), pass with the acknowledged writes."""
    logs = [
        NodeLog("n1", LOG, 1, 6),
        NodeLog("n2", LOG[:2], 1, 4),
        NodeLog("n3", LOG[2:], 5, 6),
    ]
    ops = [
        put("/a", 0, 1, "x", 2),
        put("/b", 0, 1, "y", 3),
        op(DELETE, "/a", 2, 3, rev=5),
        put("/a", 4, 5, "z", 6),
        get("/a", 6, 7, "z", 6),
    ]
    result = check_logs(logs, ops)
    assert_ok(result)
    assert result.info["common"].coverage == [(1, 6)]


def test_diverging_logs_fail() -> None:
    """Two nodes that applied different changes at one rev fail."""
    other = [Event(2, "/a", "set", "x"), Event(3, "/b", "set", "OTHER")]
    assert_fail(check_logs([NodeLog("n1", LOG, 1, 6), NodeLog("n2", other, 1, 4)]), "diverge", "rev 3")


def test_log_missing_a_change_another_has_fails() -> None:
    """A node whose dump covers a rev but lacks the change another node has fails."""
    assert_fail(check_logs([NodeLog("n1", LOG, 1, 6), NodeLog("n2", LOG[1:], 1, 6)]), "diverge", "rev 2")


def test_lost_acknowledged_write_in_log_fails() -> None:
    """An acknowledged write absent from a log covering its rev fails."""
    assert_fail(check_logs([NodeLog("n1", LOG, 1, 6)], [put("/c", 0, 1, "w", 4)]), "lost")


def test_acknowledged_write_with_other_value_in_log_fails() -> None:
    """An acknowledged write must be in the log with its own value."""
    assert_fail(check_logs([NodeLog("n1", LOG, 1, 6)], [put("/b", 0, 1, "not-y", 3)]))


def test_phantom_write_in_log_fails() -> None:
    """A change to a history key with a value nobody wrote fails."""
    ops = [put("/a", 0, 1, "x", 2), put("/a", 2, 3, "z", 6), op(DELETE, "/a", 2, 3, rev=5)]
    assert_fail(check_logs([NodeLog("n1", LOG + [Event(8, "/a", "set", "evil")], 1, 8)], ops), "phantom")


def test_indeterminate_write_in_log_is_not_phantom() -> None:
    """A change matching an indeterminate write is that write taking effect."""
    ops = [put("/b", 0, 1, "y", outcome=INDETERMINATE)]
    assert_ok(check_logs([NodeLog("n1", LOG, 1, 6)], ops))


def test_changes_before_start_rev_are_not_phantoms() -> None:
    """Changes at or before the rev where recording began need not match a recorded write."""
    ops = [put("/a", 0, 1, "z", 6), op(DELETE, "/a", 2, 3, rev=5)]
    assert_ok(check_logs([NodeLog("n1", LOG, 1, 6)], ops, start_rev=4))
    assert_fail(check_logs([NodeLog("n1", LOG, 1, 6)], ops), "phantom write")


def test_value_applied_twice_fails() -> None:
    """A write applied at two revs (its unique value twice in the log) fails,
    in check_logs and in the whole check; acknowledged at one of them or
    indeterminate (a retried or re-proposed write applied again)."""
    twice = LOG + [Event(8, "/a", "set", "z")]
    ops = [put("/a", 0, 1, "x", 2), put("/b", 0, 1, "y", 3), op(DELETE, "/a", 2, 3, rev=5), put("/a", 4, 5, "z", 6)]
    assert_fail(check_logs([NodeLog("n1", twice, 1, 8)], ops), "applied twice", "'z'", "6, 8")
    report = check_history(History(ops, [NodeLog("n1", twice, 1, 8), NodeLog("n2", twice, 1, 8)]))
    assert report.verdict is Verdict.FAIL and "applied twice" in report.summary(), report.summary()
    indet = ops[:3] + [put("/a", 4, None, "z", outcome=INDETERMINATE)]
    assert_fail(check_logs([NodeLog("n1", twice, 1, 8)], indet), "applied twice")
    # Only the union is needed to see it: one node's log has the second
    # copy (it also diverges from the other).
    result = check_logs([NodeLog("n1", LOG, 1, 8), NodeLog("n2", twice, 1, 8)], ops)
    assert_fail(result, "applied twice", "diverge")


def test_same_value_written_twice_may_appear_twice() -> None:
    """Two writes of one value (the checker allows duplicates) may both apply."""
    twice = LOG + [Event(8, "/a", "set", "z")]
    ops = [put("/a", 0, 1, "x", 2), put("/b", 0, 1, "y", 3), op(DELETE, "/a", 2, 3, rev=5),
           put("/a", 4, 5, "z", 6), put("/a", 6, 7, "z", 8)]
    assert_ok(check_logs([NodeLog("n1", twice, 1, 8)], ops))


def test_divergence_among_many_logs_names_the_pair() -> None:
    """Logs are compared through their union: the odd one out is named with
    a node that disagrees, wherever it is in the list; logs that only
    overlap in part are compared on their overlap."""
    other = LOG[:1] + [Event(3, "/b", "set", "OTHER")] + LOG[2:]
    logs = [NodeLog("n1", LOG[:2], 1, 4), NodeLog("n2", LOG[2:], 5, 6), NodeLog("n3", LOG, 1, 6),
            NodeLog("n4", other, 1, 6)]
    result = check_logs(logs)
    assert_fail(result, "n4", "rev 3", "OTHER")
    assert len(result.problems) == 1, result.summary()
    assert_fail(check_logs(logs[::-1]), "n4", "rev 3")
    assert_ok(check_logs(logs[:3]))


def test_read_naming_a_rev_without_change_fails() -> None:
    """A read's file rev must be a rev at which the log has a change."""
    assert_fail(check_logs([NodeLog("n1", LOG, 1, 6)], [get("/a", 0, 1, "x", 4)]), "nothing changed")


def test_read_disagreeing_with_log_fails() -> None:
    """A read reporting (value, rev) must match the log's change at that rev."""
    assert_fail(check_logs([NodeLog("n1", LOG, 1, 6)], [get("/a", 0, 1, "z", 2)]), "reports file rev")


def test_unordered_log_fails() -> None:
    """A node's log must be strictly ordered by rev."""
    assert_fail(check_logs([NodeLog("n1", [LOG[1], LOG[0]], 1, 6)]), "strictly ordered")


def test_write_beyond_all_logs_is_counted_unverified() -> None:
    """An acknowledged write at a rev no dump covers is not a failure but is counted."""
    result = check_logs([NodeLog("n1", LOG, 1, 6)], [put("/c", 0, 1, "w", 40)])
    assert_ok(result)
    assert result.info["unverified"] == 1


# ---------------------------------------------------------------------------
# Watch streams
# ---------------------------------------------------------------------------

WLOG = CommonLog(
    {
        2: Event(2, "/a", "set", "x"),
        3: Event(3, "/b/c", "set", "y"),
        5: Event(5, "/a", "del"),
        6: Event(6, "/ab", "set", "z"),
        8: Event(8, "/a", "set", "w"),
    },
    [(1, 9)],
)


def watch_call(glob: str, asked: int, events: list[Event], nxt: int, t: float, stream: str = "s") -> Op:
    """One acknowledged watch call of stream ``stream``."""
    return op(WATCH, glob, t, t + 0.5, OK, prec=asked, rev=nxt, events=events, process="w", stream=stream)


def test_watch_stream_resumed_from_next_passes() -> None:
    """A stream of several calls, each resuming from next, equal to the filtered log, passes."""
    e = WLOG.events
    calls = [
        watch_call("/a", 1, [e[2]], 3, 0),
        watch_call("/a", 3, [e[5]], 6, 1),
        watch_call("/a", 6, [], 8, 2),  # timed out with nothing new
        watch_call("/a", 8, [e[8]], 9, 3),
    ]
    assert_ok(check_watches(calls, WLOG))


def test_watch_glob_semantics() -> None:
    """`?` and `*` stay within a component and `**` crosses components."""
    e = WLOG.events
    assert_ok(check_watches([watch_call("/a?", 1, [e[6]], 7, 0)], WLOG))
    assert_ok(check_watches([watch_call("/*", 1, [e[2], e[5], e[6], e[8]], 9, 0)], WLOG))
    assert_ok(check_watches([watch_call("/**", 1, [e[2], e[3], e[5], e[6], e[8]], 9, 0)], WLOG))
    assert_fail(check_watches([watch_call("/*", 1, [e[2], e[3], e[5], e[6], e[8]], 9, 0)], WLOG), "glob")


def test_reordered_watch_events_fail() -> None:
    """Events within a stream must come in rev order."""
    e = WLOG.events
    assert_fail(check_watches([watch_call("/a", 1, [e[5], e[2]], 6, 0)], WLOG), "out of order")


def test_reordered_watch_events_across_calls_fail() -> None:
    """A later call must not return an event older than one already received."""
    e = WLOG.events
    calls = [watch_call("/a", 1, [e[5]], 6, 0), watch_call("/a", 6, [e[2]], 3, 1)]
    assert_fail(check_watches(calls, None), "out of order")


def test_gap_in_watch_stream_fails() -> None:
    """A stream that skips a matching change fails."""
    e = WLOG.events
    calls = [watch_call("/a", 1, [e[2]], 3, 0), watch_call("/a", 3, [e[8]], 9, 1)]
    assert_fail(check_watches(calls, WLOG), "gap", "rev 5")


def test_gap_hidden_by_next_fails() -> None:
    """An empty answer whose next jumps over a matching change is a gap."""
    e = WLOG.events
    calls = [watch_call("/a", 1, [e[2]], 3, 0), watch_call("/a", 3, [], 7, 1), watch_call("/a", 7, [e[8]], 9, 2)]
    assert_fail(check_watches(calls, WLOG), "gap")


def test_duplicated_watch_event_fails() -> None:
    """The same change delivered twice in one stream fails."""
    e = WLOG.events
    calls = [watch_call("/a", 1, [e[2]], 3, 0), watch_call("/a", 3, [e[2], e[5]], 6, 1)]
    assert_fail(check_watches(calls, WLOG), "duplicated")


def test_watch_event_not_in_log_fails() -> None:
    """An event the log does not have at that rev fails."""
    calls = [watch_call("/a", 1, [Event(4, "/a", "set", "bogus")], 5, 0)]
    assert_fail(check_watches(calls, WLOG), "no such change")


def test_watch_not_resuming_from_next_fails() -> None:
    """A client asking for a rev other than the previous next is flagged."""
    e = WLOG.events
    calls = [watch_call("/a", 1, [e[2]], 3, 0), watch_call("/a", 5, [e[5]], 6, 1)]
    assert_fail(check_watches(calls, WLOG), "resume")


def test_watch_wrong_next_fails() -> None:
    """next must be one past the last event returned."""
    e = WLOG.events
    assert_fail(check_watches([watch_call("/a", 1, [e[2]], 5, 0)], WLOG), "one past")


def test_watch_restart_after_too_late_starts_new_segment() -> None:
    """After a failed call (TOO_LATE) the client may restart anywhere; the new run is checked alone."""
    e = WLOG.events
    calls = [
        watch_call("/a", 1, [e[2]], 3, 0),
        op(WATCH, "/a", 1, 1.5, FAIL, prec=3, code="TOO_LATE", process="w", stream="s"),
        watch_call("/a", 6, [e[8]], 9, 2),
    ]
    assert_ok(check_watches(calls, WLOG))


def test_watch_beyond_log_coverage_is_unverified() -> None:
    """Revs of a stream that no log covers are counted, not judged against the log."""
    e = WLOG.events
    result = check_watches([watch_call("/a", 1, [e[2], e[5], e[8], Event(12, "/a", "set", "q")], 13, 0)], WLOG)
    assert_ok(result)
    assert result.info["unverified"] == 3


# ---------------------------------------------------------------------------
# History records
# ---------------------------------------------------------------------------


def test_history_round_trips_through_json_lines(tmp_path) -> None:
    """save/load keeps ops (binary values included), watch events, logs and initial state."""
    ops = [
        put("/a", 0.5, 1.25, "x", 3),
        op(SET, "/b", 1, None, INDETERMINATE, value=b"\xff\x00bin", prec=4),
        get("/a", 2, 3, None),
        watch_call("/**", 1, [Event(3, "/a", "set", "x"), Event(4, "/a", "del")], 5, 4),
    ]
    hist = History(ops, [NodeLog("n1", [Event(3, "/a", "set", b"\x80")], 1, 3)], {"/c": (b"init", 1)}, start_rev=2)
    path = tmp_path / "h.jsonl"
    hist.save(path)
    back = History.load(path)
    assert back == hist


def test_recorder_classifies_http_answers() -> None:
    """2xx is ok, 4xx a definite failure (with REV_MISMATCH's rev), 5xx and no answer indeterminate."""
    clock = itertools.count()
    rec = Recorder(clock=lambda: float(next(clock)))
    a = rec.from_http(rec.invoke(1, SET, "/a", value="x"), 200, {"path": "/a", "rev": 7})
    b = rec.from_http(rec.invoke(1, CAS, "/a", value="y", prec=2), 409, {"error": "REV_MISMATCH", "rev": 7})
    c = rec.from_http(rec.invoke(1, SET, "/a", value="z"), 503, {"error": "UNAVAILABLE", "indeterminate": True})
    d = rec.from_http(rec.invoke(1, SET, "/a", value="z"), None, None)
    e = rec.from_http(rec.invoke(1, READ, "/a"), 200, {"path": "/a", "rev": 7, "value": "/w==", "encoding": "base64"})
    f = rec.from_http(rec.invoke(1, READ, "/a"), 404, {"error": "NOENT"})
    w = rec.from_http(
        rec.invoke(1, WATCH, "/**", prec=1), 200, {"events": [{"rev": 7, "path": "/a", "op": "set", "value": "x"}], "next": 8}
    )
    pending = rec.invoke(2, DELETE, "/a")
    assert (a.outcome, a.rev) == (OK, 7)
    assert (b.outcome, b.code, b.rev) == (FAIL, "REV_MISMATCH", 7)
    assert c.outcome == d.outcome == INDETERMINATE
    assert (e.value, e.rev) == (b"\xff", 7)
    assert (f.outcome, f.code) == (FAIL, "NOENT")
    assert w.events == [Event(7, "/a", "set", "x")] and w.rev == 8
    hist = rec.history()
    assert hist.ops[-1] is pending and pending.complete is None and pending.outcome == INDETERMINATE
    assert a.invoke < a.complete < b.invoke


def test_recorder_refuses_double_completion() -> None:
    """Completing an op twice is a harness bug and raises."""
    rec = Recorder()
    o = rec.invoke(1, SET, "/a", value="x")
    rec.ok(o, rev=3)
    with pytest.raises(ValueError):
        rec.ok(o, rev=4)


def test_command_line_exit_codes(tmp_path, capsys) -> None:
    """`python -m tests.faults.checker FILE` exits 0 for a valid history and 1 for a violation."""
    good = tmp_path / "good.jsonl"
    bad = tmp_path / "bad.jsonl"
    History([put("/a", 0, 1, "x", 3), get("/a", 2, 3, "x", 3)]).save(good)
    History([put("/a", 0, 1, "x", 3), get("/a", 2, 3, "y", 3)]).save(bad)
    assert main([str(good)]) == 0
    assert main([str(bad)]) == 1
    assert "linearizability: fail" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Several changes at one rev (a lease's end, a transaction)
# ---------------------------------------------------------------------------

MULTI = [
    Event(1, "/a", "set", "x"),
    Event(2, "/ctl/lease/L", "del"),
    Event(2, "/e/k", "del"),
    Event(3, "/a", "set", "y"),
]


def test_logs_with_several_changes_at_one_rev_pass_in_any_order() -> None:
    """Two nodes listing a rev's changes in different orders agree."""
    other = [MULTI[0], MULTI[2], MULTI[1], MULTI[3]]
    result = check_logs([NodeLog("n1", MULTI, 1, 3), NodeLog("n2", other, 1, 3)])
    assert_ok(result)
    assert result.info["common"].at(2) == (MULTI[1], MULTI[2])


def test_a_log_missing_one_change_of_a_rev_diverges() -> None:
    partial = [e for e in MULTI if e.path != "/e/k"]
    assert_fail(check_logs([NodeLog("n1", MULTI, 1, 3), NodeLog("n2", partial, 1, 3)]), "diverge", "rev 2")


def test_a_path_changed_twice_at_one_rev_fails() -> None:
    assert_fail(check_logs([NodeLog("n1", MULTI + [Event(3, "/a", "set", "z")], 1, 3)]), "changed twice")


def test_watch_streams_over_a_rev_with_several_changes() -> None:
    """A stream gets every matching change of the rev, once; a missing one
    is a gap, a repeated one a duplicate."""
    common = CommonLog.from_logs([NodeLog("n1", MULTI, 1, 3)])
    assert_ok(check_watches([watch_call("/**", 1, MULTI, 4, 0)], common))
    assert_ok(check_watches([watch_call("/e/*", 1, [MULTI[2]], 3, 0)], common))
    assert_fail(check_watches([watch_call("/**", 1, [MULTI[0], MULTI[1], MULTI[3]], 4, 0)], common), "gap", "/e/k")
    assert_fail(check_watches([watch_call("/**", 1, MULTI[:3] + [MULTI[2], MULTI[3]], 4, 0)], common),
                "duplicated")
