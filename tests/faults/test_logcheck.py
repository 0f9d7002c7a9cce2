"""The node-log checker (tests/faults/logcheck.py): logs that agree pass,
diverging, unordered or unfaithful ones fail."""

from __future__ import annotations

from .checker import check_history
from .histories import MULTI, assert_fail, assert_ok, get, op, put
from .history import DELETE, INDETERMINATE, Event, History, NodeLog
from .logcheck import check_logs
from .results import Verdict


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
# Several changes at one rev (a lease's end, a transaction)
# ---------------------------------------------------------------------------


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
