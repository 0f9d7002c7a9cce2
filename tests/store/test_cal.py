"""Tests for doozer.store's CAL (doozer/store/cal.py): its rules, slot names, order, and the cache."""

from __future__ import annotations

from typing import Any

import pytest

from doozer.store import Store
from doozer.store import mutation as mut
from doozer.store import snapshot as store_snapshot
from storeutil import FAR, D, S, code, request_ids


# -------------------------------------------------------------------- CAL

CAL_RULES = [
    # (setup, item, expected code)
    ([S("/ctl/cal/0", b"A")], lambda: D("/ctl/cal/0"), "FORBIDDEN"),
    ([S("/ctl/cal/0", b"A")], lambda: S("/ctl/cal/0", b""), "FORBIDDEN"),
    ([S("/ctl/cal/0", b"A"), S("/ctl/cal/1", b"B")], lambda: D("/ctl/cal/0"), None),
    ([S("/ctl/cal/0", b"A")], lambda: S("/ctl/cal/1", b"A"), "FORBIDDEN"),
    ([S("/ctl/cal/0", b"A")], lambda: S("/ctl/cal/0", b"B"), None),
    ([S("/ctl/cal/0", b"A")], lambda: S("/ctl/cal/1", b""), None),
    ([S("/ctl/cal/0", b"A"), S("/ctl/cal/1", b"")], lambda: D("/ctl/cal/1"), None),
    ([], lambda: S("/ctl/cal/0", b"A"), None),
    ([], lambda: S("/ctl/cal/0", b""), None),  # no member before: nothing to lose
]


@pytest.mark.parametrize("setup,item,expected", CAL_RULES)
def test_cal_rules(setup: list[bytes], item: Any, expected: str | None) -> None:
    """A CAL change that empties the cluster or duplicates a member is FORBIDDEN."""
    store = Store()
    store.apply(setup)
    before = store.cal()
    outcome = store.apply([item()])[0]
    assert code(outcome) == expected
    if expected:
        assert store.cal() == before


def test_cal_lists_members_by_slot_number() -> None:
    """cal() lists non-empty numeric slots ordered by number, not by name."""
    store = Store()
    outcomes = store.apply([S("/ctl/cal/10", b"C"), S("/ctl/cal/2", b"B"), S("/ctl/cal/1", b""),
                            S("/ctl/cal/0", b"A"), S("/ctl/cal/x", b"")])
    assert store.cal() == ["A", "B", "C"]
    assert code(outcomes[-1]) == "FORBIDDEN"
    assert store.cal_slots() == [(0, "A"), (1, ""), (2, "B"), (10, "C")]
    assert Store().cal() == []


@pytest.mark.parametrize("name", ["01", "1000", "00", "x", "1a", "0x1", "-1", "1.0"])
def test_only_canonical_slot_names_can_be_written(name: str) -> None:
    """SPEC §1: a CAL slot is /ctl/cal/N, N decimal 0-999 without sign or
    leading zero. Any other name is refused when applied, so no two slots
    share a number and the CAL's order never falls to a set's hash order."""
    store = Store()
    store.apply([S("/ctl/cal/1", b"A")])
    outcome = store.apply([S(f"/ctl/cal/{name}", b"B")])[0]
    assert code(outcome) == "FORBIDDEN"
    assert store.cal() == ["A"]
    assert store.apply([S(f"/ctl/cal/{name}/below", b"B")])[0].error is not None


def test_a_non_canonical_slot_in_an_old_store_never_counts() -> None:
    """A store made before the rule (an old snapshot) may hold /ctl/cal/01
    beside /ctl/cal/1: it is no slot, never in cal() and never ordered, and
    may be deleted."""
    store = Store()
    store.apply([S("/ctl/cal/1", b"A"), S("/ctl/cal/2", b"C")])
    store._set("/ctl/cal/01", b"B", store.rev + 1, None)  # as an old store held it
    store.rev += 1
    store._cal = None
    copy = store_snapshot.load(store_snapshot.dump(store))
    for s in (store, copy):
        assert s.cal() == ["A", "C"]
        assert s.cal_slots() == [(1, "A"), (2, "C")]
    assert code(copy.apply([D("/ctl/cal/01")])[0]) is None
    assert copy.cal() == ["A", "C"]


def test_compare_preconditions_must_all_hold() -> None:
    """A mutation's further (path, rev) preconditions are checked like its
    own: a file at a rev above the bound (or a directory) fails it with
    REV_MISMATCH naming the path, and nothing changes."""
    store = Store()
    store.apply([S("/rec"), S("/slot", b"X"), S("/d/f")])
    ok = mut.Mutation(mut.SET, "t", next(request_ids), "/slot", b"", 2, until=FAR,
                      compare=(("/rec", 1), ("/missing", 0)))
    assert store.apply([ok.encode()])[0].error is None
    store.apply([S("/rec")])
    stale = mut.Mutation(mut.SET, "t", next(request_ids), "/slot", b"Y", -1, until=FAR,
                         compare=(("/rec", 1),))
    failed = store.apply([stale.encode()])[0]
    assert code(failed) == "REV_MISMATCH"
    assert failed.error.extra == {"rev": 5, "path": "/rec"}
    assert store.get("/slot").value == b""
    on_dir = mut.Mutation(mut.SET, "t", next(request_ids), "/slot", b"Y", -1, until=FAR,
                          compare=(("/d", 0),))
    assert code(store.apply([on_dir.encode()])[0]) == "ISDIR"


def test_cal_is_remembered_until_a_slot_changes() -> None:
    """cal() is computed once and kept until something below /ctl/cal is
    written or deleted (every write and every applied instance asks for it);
    a caller changing the list it got changes nothing in the store."""
    store = Store()
    store.apply([S("/ctl/cal/0", b"A"), S("/ctl/cal/1", b"")])
    first = store.cal()
    first.append("junk")
    assert store.cal() == ["A"]
    store.apply([S("/elsewhere", b"x"), S("/ctl/calx", b"y")])
    assert store._cal is not None  # unrelated writes keep it
    store.apply([S("/ctl/cal/1", b"B")])
    assert store.cal() == ["A", "B"]
    store.apply([D("/ctl/cal/0")])
    assert store.cal() == ["B"]
    store.apply([S("/ctl/cal/1", b"C", rev=1)])  # refused: REV_MISMATCH
    assert store.cal() == ["B"]
    other = Store()
    other.apply([S("/ctl/cal/0", b"Z")])
    assert other.cal() == ["Z"]
    store.adopt(other)
    assert store.cal() == ["Z"]
