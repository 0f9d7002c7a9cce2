"""The watch-stream checker (tests/faults/watchcheck.py): streams equal to
the log filtered by their glob pass; gaps, duplicates, reordering and wrong
``next`` fail."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from .histories import MULTI, assert_fail, assert_ok, op, sim_logs, sim_watch, simulate, watch_call
from .history import FAIL, WATCH, Event, NodeLog
from .logcheck import CommonLog
from .watchcheck import check_watches


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


def test_watch_streams_over_a_rev_with_several_changes() -> None:
    """A stream gets every matching change of the rev, once; a missing one
    is a gap, a repeated one a duplicate."""
    common = CommonLog.from_logs([NodeLog("n1", MULTI, 1, 3)])
    assert_ok(check_watches([watch_call("/**", 1, MULTI, 4, 0)], common))
    assert_ok(check_watches([watch_call("/e/*", 1, [MULTI[2]], 3, 0)], common))
    assert_fail(check_watches([watch_call("/**", 1, [MULTI[0], MULTI[1], MULTI[3]], 4, 0)], common), "gap", "/e/k")
    assert_fail(check_watches([watch_call("/**", 1, MULTI[:3] + [MULTI[2], MULTI[3]], 4, 0)], common),
                "duplicated")
