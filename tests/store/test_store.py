"""Tests for doozer.store: applying mutations, write rules, reads at a rev, history, snapshots."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doozer.store import mutation as mut
from doozer.errors import DoozerError
from doozer.store import NO_KEY, Dir, File, Outcome, Store
from doozer.store import snapshot as store_snapshot
from storeutil import FAR, D, N, S, code, result

# ------------------------------------------------------------------ revs


def test_every_item_takes_the_next_rev() -> None:
    """Successes, failures, NOPs and undecodable items each take the next rev."""
    store = Store()
    outcomes = store.apply([S("/a"), D("/missing"), N(), b"\xc1junk", S("/a", rev=0)])
    assert [o.rev for o in outcomes] == [1, 2, 3, 4, 5]
    assert [code(o) for o in outcomes] == [None, "NOENT", None, "OTHER", "REV_MISMATCH"]
    assert store.rev == 5
    assert outcomes[3].key == NO_KEY


def test_duplicate_key_is_skipped_and_takes_no_rev() -> None:
    """An item whose key was already applied takes no rev and returns the original outcome."""
    store = Store()
    item = S("/a", b"1")
    first = store.apply([item])[0]
    again = store.apply([item, S("/b")])
    assert again[0] == Outcome(first.rev, first.key, None, duplicate=True)
    assert again[1].rev == 2
    assert store.get("/a").value == b"1" and store.rev == 2


def test_a_key_is_remembered_until_its_deadline_whatever_the_revs() -> None:
    """The de-duplication record keeps a key until its deadline instance is
    applied, however many revs pass (a busy cluster burns 20,000 revs in
    seconds); after it, a copy is refused by the deadline itself. So no
    copy of a request is ever applied twice."""
    store = Store()
    item = S("/a", b"first", until=5)
    assert store.apply([item], seqn=1)[0].error is None
    store.apply([S("/a", b"later") for _ in range(30_000)], seqn=2)
    again = store.apply([item], seqn=5)[0]  # the last instance it may be in
    assert again.duplicate and again.rev == 1
    assert store.get("/a").value == b"later"
    # Forgotten once instance 5 is applied: no copy can come after it.
    assert store.outcome_of(("t", mut.Mutation.decode(item).request)) is None
    late = store.apply([item], seqn=6)[0]
    assert late.error is not None and late.error.code == "UNAVAILABLE"
    assert late.error.extra == {"indeterminate": False}
    assert store.get("/a").value == b"later" and store.rev == 30_001


def test_an_item_decided_after_its_deadline_is_refused_and_takes_no_rev() -> None:
    """A mutation decided in an instance after its deadline changes nothing,
    takes no rev, and says it did not commit (not indeterminate)."""
    store = Store()
    outcomes = store.apply([S("/a", until=3), S("/b", until=4), N(until=3)], seqn=4)
    assert [code(o) for o in outcomes] == ["UNAVAILABLE", None, "UNAVAILABLE"]
    assert store.rev == 1 and store.get("/b").rev == 1
    assert [e.path for e in store.events("/**", 1, 10)] == ["/b"]


def test_apply_counts_instances() -> None:
    """The store knows the instance whose application produced it."""
    store = Store()
    store.apply([S("/a")])
    store.apply([])
    assert store.seqn == 2
    store.apply([N()], seqn=9)
    assert store.seqn == 9


def test_nop_changes_nothing_and_makes_no_event() -> None:
    """A NOP takes a rev but changes no file and produces no event."""
    store = Store()
    store.apply([S("/a"), N()])
    assert store.rev == 2
    assert store.get("/a").rev == 1
    assert [e.rev for e in store.events("/**", 1, 10)] == [1]


# ------------------------------------------------------------ write rules

# (setup items, item under test, expected error code, expected extra)
RULES = [
    ([], lambda: S("/a", rev=-1), None, {}),
    ([], lambda: S("/a", rev=0), None, {}),
    ([], lambda: S("/a", rev=7), None, {}),  # missing counts as rev 0 <= 7
    ([], lambda: S("/a", rev=-2), "REV_MISMATCH", {"rev": 0}),
    ([S("/a")], lambda: S("/a", rev=0), "REV_MISMATCH", {"rev": 1}),
    ([S("/a")], lambda: S("/a", rev=1), None, {}),
    ([N(), S("/a")], lambda: S("/a", rev=1), "REV_MISMATCH", {"rev": 2}),
    ([S("/a")], lambda: S("/a", rev=-1), None, {}),
    ([S("/a/b")], lambda: S("/a"), "ISDIR", {}),
    ([], lambda: S("/"), "ISDIR", {}),
    ([S("/a")], lambda: S("/a/b"), "NOTDIR", {}),
    ([S("/a")], lambda: S("/a/b/c"), "NOTDIR", {}),
    ([], lambda: D("/a"), "NOENT", {}),
    ([], lambda: D("/a", rev=0), "NOENT", {}),
    ([S("/a")], lambda: D("/a/b"), "NOENT", {}),
    ([S("/a/b")], lambda: D("/a"), "ISDIR", {}),
    ([], lambda: D("/"), "ISDIR", {}),
    ([S("/a")], lambda: D("/a", rev=0), "REV_MISMATCH", {"rev": 1}),
    ([S("/a")], lambda: D("/a", rev=1), None, {}),
    ([], lambda: S("/a/", b"x"), "BAD_PATH", {}),
    ([], lambda: S("a", b"x"), "BAD_PATH", {}),
    ([], lambda: D("/a/../b"), "BAD_PATH", {}),
    ([], lambda: S("/a b"), "BAD_PATH", {}),
]


@pytest.mark.parametrize("setup,item,expected,extra", RULES)
def test_write_rules(setup: list[bytes], item: Any, expected: str | None, extra: dict) -> None:
    """Each precondition/shape rule gives its error; a failure changes no file."""
    store = Store()
    store.apply(setup)
    before = store.walk("/**")
    outcome = store.apply([item()])[0]
    assert code(outcome) == expected
    if expected:
        assert outcome.error.extra == extra
        assert store.walk("/**") == before
        assert store.events("/**", outcome.rev, 10) == []


def test_directories_are_implicit() -> None:
    """Writing creates parent directories; deleting the last file removes empty parents."""
    store = Store()
    store.apply([S("/a/b/c"), S("/a/x")])
    assert store.getdir("/") == ["a"]
    assert store.getdir("/a") == ["b", "x"]
    assert store.get("/a/b") == Dir("/a/b", ["c"])
    store.apply([D("/a/b/c")])
    assert store.getdir("/a") == ["x"]
    with pytest.raises(DoozerError, match="NOENT"):
        store.get("/a/b")
    store.apply([D("/a/x")])
    assert store.getdir("/") == []
    assert store.walk("/**") == []


def test_getdir_errors() -> None:
    """getdir of a file is NOTDIR, of a missing path NOENT, of a bad path BAD_PATH."""
    store = Store()
    store.apply([S("/f")])
    for path, expected in [("/f", "NOTDIR"), ("/g", "NOENT"), ("/g/", "BAD_PATH")]:
        with pytest.raises(DoozerError) as info:
            store.getdir(path)
        assert info.value.code == expected


def test_walk_in_path_order_and_by_glob() -> None:
    """walk returns matching files depth first in sorted name order."""
    store = Store()
    store.apply([S("/b"), S("/a-b"), S("/a/z"), S("/a/c/d"), S("/a/c/e/f")])
    assert [f.path for f in store.walk("/**")] == ["/a/c/d", "/a/c/e/f", "/a/z", "/a-b", "/b"]
    assert [f.path for f in store.walk("/a/*/d")] == ["/a/c/d"]
    assert [f.path for f in store.walk("/a/z")] == ["/a/z"]
    assert store.walk("/nothing/**") == []
    with pytest.raises(DoozerError, match="BAD_GLOB"):
        store.walk("/a/")


# ------------------------------------------------------------- history


def test_reads_at_old_revs() -> None:
    """get, getdir and walk at an old rev see the tree as it was then."""
    store = Store()
    store.apply([S("/a/b", b"1"), S("/a/b", b"2"), D("/a/b"), S("/a", b"3")])
    assert store.get("/a/b", 1) == File("/a/b", 1, b"1")
    assert store.get("/a/b", 2) == File("/a/b", 2, b"2")
    assert store.get("/a", 2) == Dir("/a", ["b"])
    assert store.getdir("/", 3) == []
    assert store.get("/a", 4) == File("/a", 4, b"3")
    assert store.get("/", 0) == Dir("/", [])
    assert [f.value for f in store.walk("/**", 1)] == [b"1"]


def test_future_rev_is_value_error() -> None:
    """Reading at a rev not yet applied is a ValueError (the caller waits first)."""
    store = Store()
    store.apply([S("/a")])
    with pytest.raises(ValueError):
        store.get("/a", 2)


def test_history_is_pruned_and_too_late_names_oldest() -> None:
    """At least hist revs stay readable; older ones are TOO_LATE with oldest."""
    store = Store(hist=10)
    for i in range(100):
        store.apply([S("/f", str(i).encode())])
        assert store.oldest <= max(0, store.rev - 9)
        if store.rev >= 10:
            assert store.get("/f", store.rev - 9).value == str(store.rev - 10).encode()
    assert store.oldest > 50
    for read in (lambda: store.get("/f", store.oldest - 1),
                 lambda: store.events("/**", store.oldest - 1, 1)):
        with pytest.raises(DoozerError) as info:
            read()
        assert info.value.code == "TOO_LATE"
        assert info.value.extra == {"oldest": store.oldest}
    failed = result(store.watch("/**", store.oldest - 1, 1))
    assert failed.value.code == "TOO_LATE"
    # Pruning leaves no history for paths unchanged in the window.
    assert len(store.history.log) <= store.rev - store.oldest + 1
    assert store.history.kept_paths() == {"/f"}


# --------------------------------------------------------------- snapshot


def test_snapshot_round_trip() -> None:
    """from_snapshot restores the tree, rev, kept history and de-dup keys."""
    store = Store()
    dup = S("/x/y", b"\x00\xff")
    store.apply([S("/a", b""), dup, S("/ctl/cal/0", b"A"), N(), S("/a", rev=0)])
    copy = store_snapshot.load(store_snapshot.dump(store))
    assert store_snapshot.dump(copy) == store_snapshot.dump(store)
    assert (copy.rev, copy.oldest) == (store.rev, store.oldest) == (5, 0)
    assert copy.walk("/**") == store.walk("/**")
    assert copy.getdir("/x") == ["y"]
    assert copy.cal() == ["A"]
    assert copy.events("/**", 1, 100) == store.events("/**", 1, 100)
    assert copy.get("/x/y", 2) == store.get("/x/y", 2)
    again = copy.apply([dup])[0]
    assert again.duplicate and again.rev == 2
    with pytest.raises(ValueError):
        store_snapshot.load(b"nonsense")


def test_snapshot_carries_the_history_window() -> None:
    """A snapshot of a pruned store answers reads and watches from its oldest rev on."""
    store = Store(hist=8)
    for i in range(40):
        store.apply([S(f"/k/{i % 3}", str(i).encode())])
    copy = store_snapshot.load(store_snapshot.dump(store), hist=8)
    assert copy.oldest == store.oldest > 1
    for rev in range(store.oldest, store.rev + 1):
        assert copy.walk("/**", rev) == store.walk("/**", rev)
        assert copy.events("/**", rev, 100) == store.events("/**", rev, 100)
    with pytest.raises(DoozerError, match="TOO_LATE"):
        copy.get("/k/0", store.oldest - 1)


def test_history_after_snapshot() -> None:
    """A store loaded from a snapshot keeps history for the revs applied after it."""
    store = Store()
    store.apply([S("/a", b"1"), S("/b/c", b"2")])
    copy = store_snapshot.load(store_snapshot.dump(store), hist=100)
    copy.apply([D("/b/c"), S("/a", b"3")])
    assert copy.get("/b", 2) == Dir("/b", ["c"])
    assert copy.get("/a", 3) == File("/a", 1, b"1")
    assert copy.getdir("/", 3) == ["a"]
    assert copy.get("/a") == File("/a", 4, b"3")
    assert [e.rev for e in copy.events("/**", 2, 10)] == [2, 3, 4]  # history came along


def test_path_syntax_answers_before_rev() -> None:
    """A bad path read at a too-old rev is BAD_PATH, not TOO_LATE."""
    store = Store(hist=1)
    store.apply([N(), N(), N()])
    with pytest.raises(DoozerError) as info:
        store.get("/a/", 1)
    assert info.value.code == "BAD_PATH"


# --------------------------------------------------------- property test

_names = st.sampled_from(["a", "b", "c"])
_paths = st.lists(_names, min_size=1, max_size=3).map(lambda cs: "/" + "/".join(cs))
_items = st.one_of(
    st.builds(lambda p, v, r: ("set", p, v, r), _paths, st.binary(max_size=2),
              st.sampled_from([-1, -1, 0, 1, 3, 6])),
    st.builds(lambda p, r: ("del", p, r), _paths, st.sampled_from([-1, -1, 0, 2, 5])),
    st.just(("nop",)),
)
ALL_PATHS = ["/"] + sorted({"/" + "/".join(p) for n in (1, 2, 3)
                            for p in itertools.product("abc", repeat=n)})


def encode(spec: tuple, request: int) -> bytes:
    """Turn a generated item description into an encoded mutation."""
    if spec[0] == "set":
        return mut.set_("p", request, spec[1], spec[2], spec[3], until=FAR).encode()
    if spec[0] == "del":
        return mut.delete("p", request, spec[1], spec[2], until=FAR).encode()
    return mut.Mutation(mut.NOP, "p", request, until=FAR).encode()


def view(store: Store, rev: int) -> dict:
    """Everything readable at ``rev``: get and getdir of every path, and a walk."""
    out: dict[str, Any] = {"walk": store.walk("/**", rev)}
    for path in ALL_PATHS:
        for name, read in (("get", store.get), ("getdir", store.getdir)):
            try:
                out[name + path] = read(path, rev)
            except DoozerError as e:
                out[name + path] = e.code
    return out


@settings(max_examples=150, deadline=None)
@given(specs=st.lists(_items, max_size=40), batch=st.integers(1, 5), hist=st.integers(3, 50))
def test_reads_at_rev_equal_replay(specs: list, batch: int, hist: int) -> None:
    """The tree read at rev N equals a fresh store that applied only the first N items."""
    items = [encode(s, i) for i, s in enumerate(specs)]
    store = Store(hist=hist)
    for i in range(0, len(items), batch):
        store.apply(items[i:i + batch])
    assert store.rev == len(items)
    for rev in range(store.oldest, store.rev + 1):
        fresh = Store()
        fresh.apply(items[:rev])
        assert view(store, rev) == view(fresh, rev), rev
        logged = store.events("/**", store.oldest, 10_000)
        assert [e for e in logged if e.rev <= rev] == fresh.events("/**", store.oldest, 10_000)


def test_adopt_keeps_answerable_watches_and_fails_the_rest() -> None:
    """Installing a snapshot in place: a watch the new history covers fires or
    waits on; one older than it fails TOO_LATE; rev waiters wake."""
    source = Store(hist=4)
    for i in range(20):
        source.apply([S("/w", str(i).encode())])
    lagging = Store(hist=4)
    lagging.apply([S("/w", b"old")])
    covered = lagging.watch("/w", source.rev, 10)
    waiting = lagging.watch("/w", source.rev + 1, 10)
    stale = lagging.watch("/w", 2, 10)
    rev_waiter = lagging.wait_rev(source.rev)
    results: dict = {}
    for name, d in (("covered", covered), ("waiting", waiting), ("stale", stale), ("rev", rev_waiter)):
        d.addBoth(lambda r, name=name: results.__setitem__(name, r))
    lagging.adopt(store_snapshot.load(store_snapshot.dump(source), hist=4))
    assert [e.rev for e in results["covered"]] == [source.rev]
    assert "waiting" not in results and lagging.watcher_count() == 1
    assert results["stale"].value.code == "TOO_LATE"
    assert results["rev"] == source.rev
    lagging.apply([S("/w", b"new")])
    assert [e.value for e in results["waiting"]] == [b"new"]
