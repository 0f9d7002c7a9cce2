"""Transactions in the store (doozer/store/txn.py, SPEC §10): all at one rev
or nothing, checked against applying the ops one by one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doozer.store import mutation as mut
from doozer.store import snapshot
from doozer.store.mutation import Op
from doozer.store.tree import Store

_n = iter(range(10**9))


def _apply(store: Store, m: mut.Mutation) -> Any:
    return store.apply([m.encode()])[0]


def _set(store: Store, path: str, value: bytes = b"v") -> int:
    out = _apply(store, mut.set_("c", next(_n), path, value, until=10**9))
    assert out.error is None, out.error
    return out.rev


def _txn(store: Store, ops: list[Op], compare: tuple = ()) -> Any:
    return _apply(store, mut.Mutation(mut.TXN, "c", next(_n), until=10**9, compare=compare,
                                      ops=tuple(ops)))


def _files(store: Store, rev: int | None = None) -> dict[str, tuple[int, bytes]]:
    return {f.path: (f.rev, f.value) for f in store.walk("/**", rev)}


def test_ops_apply_in_order_at_one_rev() -> None:
    s = Store()
    _set(s, "/cfg/old")
    before = s.rev
    out = _txn(s, [Op(mut.SET, "/leader", b"n1"), Op(mut.DEL, "/cfg/old"),
                   Op(mut.SET, "/cfg/new", b"x")], compare=(("/leader", 0),))
    assert out.error is None and out.rev == before + 1 == s.rev
    assert _files(s) == {"/leader": (out.rev, b"n1"), "/cfg/new": (out.rev, b"x")}
    assert _files(s, out.rev - 1) == {"/cfg/old": (before, b"v")}  # N-1 sees none of it
    events = s.events("/**", out.rev, 100)
    assert [(e.rev, e.path, e.op) for e in events] == [
        (out.rev, "/leader", "set"), (out.rev, "/cfg/old", "del"), (out.rev, "/cfg/new", "set")]


def test_a_failed_compare_changes_nothing_and_says_which() -> None:
    s = Store()
    r = _set(s, "/leader", b"n0")
    _set(s, "/cfg/a")
    out = _txn(s, [Op(mut.SET, "/leader", b"n1")], compare=(("/cfg/a", -1), ("/leader", 0)))
    assert out.error.code == "REV_MISMATCH"
    assert (out.error.extra["index"], out.error.extra["path"], out.error.extra["rev"]) == (1, "/leader", r)
    assert out.error.extra["in"] == "compare"  # the list index counts in
    assert out.rev == s.rev and s.get("/leader").value == b"n0"  # type: ignore[union-attr]
    assert s.events("/**", out.rev, 10) == []  # it took a rev, and changed nothing


@pytest.mark.parametrize("ops, code, index", [
    ([Op(mut.SET, "/x", b""), Op(mut.SET, "/x/y", b"")], "NOTDIR", 1),
    ([Op(mut.SET, "/n/m", b""), Op(mut.SET, "/n", b"")], "ISDIR", 1),
    ([Op(mut.DEL, "/gone")], "NOENT", 0),
    ([Op(mut.SET, "/a", b""), Op(mut.DEL, "/a")], "BAD_ARG", 1),
    ([Op(mut.SET, "/ok", b""), Op(mut.SET, "/ctl/cal/1", b"")], "FORBIDDEN", 1),
    ([Op(mut.SET, "/ctl/lease/L", b"")], "FORBIDDEN", 0),
    ([Op(mut.SET, "/l", b"", lease="L1")], "NOENT", 0),
    ([Op(mut.SET, "bad//path", b"")], "BAD_PATH", 0),
])
def test_a_failing_op_changes_nothing_and_says_which(ops: list[Op], code: str, index: int) -> None:
    s = Store()
    _set(s, "/keep")
    before = _files(s)
    out = _txn(s, ops)
    assert out.error is not None and (out.error.code, out.error.extra["index"]) == (code, index)
    assert out.error.extra["in"] == "ops"
    assert _files(s) == before


def test_a_directory_emptied_earlier_in_the_txn_can_become_a_file() -> None:
    s = Store()
    _set(s, "/d/f")
    out = _txn(s, [Op(mut.DEL, "/d/f"), Op(mut.SET, "/d", b"now a file")])
    assert out.error is None and _files(s) == {"/d": (out.rev, b"now a file")}


def test_a_watcher_gets_a_txn_whole_even_with_limit_one() -> None:
    s = Store()
    got: list = []
    s.watch("/**", s.rev + 1, 1).addCallback(got.append)
    out = _txn(s, [Op(mut.SET, f"/w/{i}", b"") for i in range(5)])
    assert [e.path for e in got[0]] == [f"/w/{i}" for i in range(5)]
    assert {e.rev for e in got[0]} == {out.rev}
    # and from the history window
    _set(s, "/after")
    assert len(s.events("/w/*", out.rev, 1)) == 5


def test_a_snapshot_keeps_a_txn_at_one_rev() -> None:
    s = Store()
    _set(s, "/a")
    out = _txn(s, [Op(mut.SET, "/b", b"1"), Op(mut.DEL, "/a"), Op(mut.SET, "/c/d", b"2")])
    _set(s, "/e")
    t = snapshot.load(snapshot.dump(s))
    for rev in range(1, s.rev + 1):
        assert _files(t, rev) == _files(s, rev)
    assert t.events("/**", out.rev, 100) == s.events("/**", out.rev, 100)


# -- the overlay against applying the ops one by one ---------------------------

names = st.sampled_from(["/a", "/a/b", "/a/b/c", "/a/d", "/e", "/e/f"])
ops = st.lists(st.tuples(st.sampled_from([mut.SET, mut.DEL]), names), max_size=5,
               unique_by=lambda o: o[1])


@settings(max_examples=400, deadline=None)
@given(st.lists(names, max_size=4), ops)
def test_a_txn_applies_exactly_when_its_ops_would_one_by_one(start: list[str], chosen: list) -> None:
    s = Store()
    for path in start:
        _apply(s, mut.set_("c", next(_n), path, b"0", until=10**9))
    model = snapshot.load(snapshot.dump(s))
    first_failure = None
    for i, (kind, path) in enumerate(chosen):
        m = mut.Mutation(kind, "c", next(_n), path, b"1", until=10**9)
        out = _apply(model, m)
        if out.error is not None:
            first_failure = (i, out.error.code)
            break
    before = _files(s)
    out = _txn(s, [Op(kind, path, b"1") for kind, path in chosen])
    if first_failure is None:
        assert out.error is None
        assert {p: v for p, (_, v) in _files(s).items()} == {
            p: v for p, (_, v) in _files(model).items()}
    else:
        assert out.error is not None
        assert (out.error.extra["index"], out.error.code) == first_failure
        assert _files(s) == before
