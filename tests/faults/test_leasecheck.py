"""Unit tests of the lease checks (tests/faults/leasecheck.py) on hand-made
histories: each check passes a good history and flags one that breaks it.

The good history: holder ``a`` is granted lease ``L`` (ttl 2) at t=0
(rev 10), takes ``/election/leader`` at rev 11, renews at t=0.5 and 1.0
(answered 200), goes silent at 1.2; the lease ends at rev 20 (its file and
the key in one change), which a watcher sees at 3.2 (G1 asks >= 1.0 + 2)
and ``a``'s probe at 3.3. Holder ``b`` (lease ``M``, granted at rev 12)
takes the key at rev 21, answered at 3.4.
"""

from __future__ import annotations

import itertools
from typing import Any, Optional

from .checker import CheckResult, check_history
from .histories import assert_fail, assert_ok
from .history import FAIL, INDETERMINATE, OK, WATCH, Event, History, NodeLog, Op
from .leasecheck import check_leases
from .leaseops import GRANT, KEEPALIVE, PROBE, REVOKE, SILENCE, TAKEOVER, LeaseOp

KEY = "/election/leader"
_ids = itertools.count()


def lop(proc: str, kind: str, lease: str, t0: float, t1: Optional[float], outcome: str = OK,
        **kw: Any) -> LeaseOp:
    """One lease op."""
    return LeaseOp(next(_ids), proc, kind, lease, t0, t1, outcome, **kw)


def good_ops() -> list[LeaseOp]:
    """The good history's lease requests (module docs)."""
    return [
        lop("a", GRANT, "L", 0.0, 0.1, ttl=2, rev=10),
        lop("a", TAKEOVER, "L", 0.1, 0.2, rev=11, value="a/L/1"),
        lop("b", GRANT, "M", 0.1, 0.2, ttl=2, rev=12),
        lop("b", TAKEOVER, "M", 0.2, 0.3, FAIL, code="REV_MISMATCH", rev=11, value="b/M/1"),
        lop("a", KEEPALIVE, "L", 0.5, 0.6),
        lop("a", KEEPALIVE, "L", 1.0, 1.1),
        lop("a", SILENCE, "L", 1.2, 1.2, ttl=2),
        lop("a", PROBE, "L", 2.0, 2.1),
        lop("a", PROBE, "L", 3.25, 3.3, FAIL, code="NOENT"),
        lop("b", KEEPALIVE, "M", 0.8, 0.9),
        lop("b", KEEPALIVE, "M", 1.5, 1.6),
        lop("b", KEEPALIVE, "M", 2.2, 2.3),
        lop("b", KEEPALIVE, "M", 2.9, 3.0),
        lop("b", TAKEOVER, "M", 3.3, 3.4, rev=21, value="b/M/2"),
    ]


def good_log() -> list[Event]:
    """The good history's log: the lease's end is two changes at rev 20."""
    return [
        Event(10, "/ctl/lease/L", "set", '{"ttl": 2}'),
        Event(11, KEY, "set", "a/L/1"),
        Event(12, "/ctl/lease/M", "set", '{"ttl": 2}'),
        Event(20, "/ctl/lease/L", "del"),
        Event(20, KEY, "del"),
        Event(21, KEY, "set", "b/M/2"),
    ]


def watch(t: float, events: list[Event], asked: int = 1, nxt: int = 21) -> Op:
    """One call of a ``/ctl/lease/*`` watcher, answered at ``t``."""
    return Op(next(_ids), "lw0", WATCH, "/ctl/lease/*", t - 0.5, t, OK, prec=asked, rev=nxt, events=events)


def history(ops: list[LeaseOp], log: Optional[list[Event]] = None, seen_at: float = 3.2,
            faults: Optional[list[tuple[float, float]]] = None) -> History:
    log = good_log() if log is None else log
    leases = [e for e in log if e.path.startswith("/ctl/lease/")]
    calls = [watch(seen_at, leases, nxt=leases[-1].rev + 1)]
    end = max(e.rev for e in log)
    return History(ops=calls, logs=[NodeLog("n1", log, 1, end), NodeLog("n2", list(log), 1, end)],
                   start_rev=0, leases=ops, faults=faults or [])


def check(h: History) -> CheckResult:
    """The lease checks alone."""
    return check_leases(h)


def replaced(ops: list[LeaseOp], kind: str, lease: str, t0: float, **kw: Any) -> list[LeaseOp]:
    """``ops`` with the op of that kind, lease and invoke changed by ``kw``."""
    out = []
    for o in ops:
        if o.kind == kind and o.lease == lease and o.invoke == t0:
            o = LeaseOp(o.id, o.process, o.kind, o.lease, kw.pop("invoke", o.invoke), kw.pop("complete", o.complete),
                        kw.pop("outcome", o.outcome), **{k: kw.get(k, getattr(o, k))
                                                          for k in ("ttl", "code", "rev", "value", "node")})
        out.append(o)
    return out


def test_a_good_history_passes_and_counts() -> None:
    result = check(history(good_ops()))
    assert_ok(result)
    info = result.info
    assert info["granted"] == 2 and info["ended"] == 1 and info["expired"] == 1 and info["revoked"] == 0
    assert info["g1_checked"] == 1 and abs(info["g1_least_margin_s"] - 0.2) < 1e-9
    assert info["g2_checked"] == 1 and info["tenures"] == 2 and info["belief_pairs_checked"] == 1


def test_check_history_runs_the_lease_checks() -> None:
    report = check_history(history(good_ops()))
    assert [r.name for r in report.results][-1] == "leases" and report.ok, report.summary()


def test_history_with_leases_and_faults_saves_and_loads(tmp_path) -> None:
    unanswered = LeaseOp(next(_ids), "c", GRANT, None, 0.0, None, INDETERMINATE, ttl=3, code="TimeoutError")
    h = history(good_ops() + [unanswered], faults=[(5.0, 6.0), (7.0, float("inf"))])
    h.save(tmp_path / "h.jsonl")
    back = History.load(tmp_path / "h.jsonl")
    assert back.leases == h.leases and back.faults == h.faults
    assert_ok(check(back))


# -- G1 ------------------------------------------------------------------------


def test_g1_an_end_seen_before_a_keepalive_send_plus_ttl_fails() -> None:
    assert_fail(check(history(good_ops(), seen_at=2.9)), "G1", "lease L", "keepalive")


def test_g1_a_keepalive_answered_noent_before_the_bound_fails() -> None:
    """The holder's own NOENT is an observation of the end too."""
    ops = good_ops() + [lop("a", KEEPALIVE, "L", 1.3, 1.4, FAIL, code="NOENT")]
    assert_fail(check(history(ops)), "G1", "keepalive NOENT")


def test_g1_a_keepalive_answered_200_after_the_end_was_seen_fails() -> None:
    ops = good_ops() + [lop("a", KEEPALIVE, "L", 3.25, 3.35)]
    assert_fail(check(history(ops)), "G1")


def test_g1_a_revoked_lease_may_end_early() -> None:
    ops = good_ops() + [lop("a", REVOKE, "L", 1.25, 1.3, rev=20)]
    result = check(history(ops, seen_at=1.4))
    assert_ok(result)
    assert result.info["revoked"] == 1 and result.info["g1_checked"] == 0


def test_g1_an_indeterminate_revoke_excuses_only_later_observations() -> None:
    before = good_ops() + [lop("a", REVOKE, "L", 1.25, None, INDETERMINATE)]
    assert_ok(check(history(before, seen_at=1.4)))
    after = good_ops() + [lop("a", REVOKE, "L", 1.5, None, INDETERMINATE)]
    assert_fail(check(history(after, seen_at=1.4)), "G1")


# -- G2 ------------------------------------------------------------------------


def late_probe(t: float) -> list[LeaseOp]:
    """The good ops, with the lease still there at a probe invoked at ``t``
    and the end seen after it."""
    return good_ops() + [lop("a", PROBE, "L", t, t + 0.05)]


def test_g2_a_silent_lease_still_there_after_the_bound_fails() -> None:
    # silent at 1.2, ttl 2: bound 1.2 + 2.04 + 2 = 5.24
    ops = [o for o in late_probe(5.3) if not (o.kind == PROBE and o.outcome == FAIL)]
    ops.append(lop("a", PROBE, "L", 5.6, 5.7, FAIL, code="NOENT"))
    assert_fail(check(history(ops, seen_at=5.5)), "G2", "lease L")


def test_g2_a_read_before_the_bound_is_no_violation() -> None:
    ops = [o for o in late_probe(5.2) if not (o.kind == PROBE and o.outcome == FAIL)]
    ops.append(lop("a", PROBE, "L", 5.6, 5.7, FAIL, code="NOENT"))
    assert_ok(check(history(ops, seen_at=5.5)))


def test_g2_is_not_asked_during_a_fault_or_after_an_unanswered_keepalive() -> None:
    ops = [o for o in late_probe(5.3) if not (o.kind == PROBE and o.outcome == FAIL)]
    assert_ok(check(history(ops, seen_at=5.5, faults=[(4.0, 4.5)])))
    unanswered = replaced(ops, KEEPALIVE, "L", 0.5, outcome=INDETERMINATE, complete=None, code="TimeoutError")
    result = check(history(unanswered, seen_at=5.5))
    assert_ok(result)
    assert result.info["g2_checked"] == 0


# -- the election -------------------------------------------------------------


def test_election_two_holders_overlapping_in_the_log_fail() -> None:
    log = good_log()
    log.insert(3, Event(15, KEY, "set", "b/M/2"))
    log = [e for e in log if e.rev != 21]
    ops = replaced(good_ops(), TAKEOVER, "M", 3.3, rev=15)
    assert_fail(check(history(ops, log)), "two holders overlap")


def test_election_a_key_outliving_its_lease_fails() -> None:
    log = [e for e in good_log() if not (e.rev == 20 and e.path == KEY)]
    log.append(Event(22, KEY, "del"))
    assert_fail(check(history(good_ops(), log)), "ends the tenure", "lease L")


def test_election_a_key_attached_to_an_ended_lease_fails() -> None:
    log = good_log() + [Event(22, "/ctl/lease/M", "del"), Event(22, KEY, "del"),
                        Event(23, KEY, "set", "c/M/9")]
    ops = good_ops() + [lop("c", TAKEOVER, "M", 4.0, 4.1, rev=23, value="c/M/9")]
    assert_fail(check(history(ops, log, seen_at=3.2)), "attached to lease M")


def test_election_a_takeover_answered_while_the_former_holder_still_believed_fails() -> None:
    """b's takeover answered at 2.8, while a's keepalive sent at 1.0
    promised a the key until 3.0 (the log alone is fine)."""
    ops = replaced(good_ops(), TAKEOVER, "M", 3.3, invoke=2.7, complete=2.8)
    assert_fail(check(history(ops)), "election", "still held it")


def test_election_a_holder_that_revoked_believes_no_longer() -> None:
    ops = replaced(good_ops(), TAKEOVER, "M", 3.3, invoke=1.7, complete=1.8)
    ops += [lop("a", REVOKE, "L", 1.25, 1.3, rev=20)]
    assert_ok(check(history(ops, seen_at=1.4)))


def test_acknowledged_ops_missing_from_the_log_fail() -> None:
    ops = replaced(good_ops(), GRANT, "L", 0.0, rev=9)
    assert_fail(check(history(ops)), "acknowledged grant not in the log")
    ops = replaced(good_ops(), TAKEOVER, "L", 0.1, rev=12)
    assert_fail(check(history(ops)), "acknowledged takeover not in the log")
