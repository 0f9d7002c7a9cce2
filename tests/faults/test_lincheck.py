"""The linearizability checker (tests/faults/lincheck.py) on hand-made and
simulated histories: correct ones pass, each kind of violation fails."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .histories import assert_fail, assert_ok, get, op, put, simulate
from .history import CAS, DELETE, FAIL, INDETERMINATE, OK, READ, SET, Op
from .lincheck import check_linearizability
from .results import CheckResult, Verdict


# ---------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------


def lin(*ops: Op, **kw) -> CheckResult:
    """Linearizability of the given ops."""
    return check_linearizability(list(ops), **kw)


def assert_lin_fails(*ops: Op, words: tuple[str, ...] = (), search_words: tuple[str, ...] = ()) -> None:
    """The ops fail the linearizability check, both with the quick checks
    (mentioning ``words``) and by the search alone (mentioning
    ``search_words``)."""
    assert_fail(lin(*ops), *words)
    assert_fail(lin(*ops, quick=False), *search_words)


# ---------------------------------------------------------------------------
# Histories that must pass
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
# Histories that must fail
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
# Simulated histories
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
