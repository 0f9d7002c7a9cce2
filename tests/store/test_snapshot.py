"""Tests for doozer.store.snapshot: a loaded store is the store that was dumped."""

from __future__ import annotations

import itertools
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doozer.store import mutation as mut
from doozer.store import snapshot as store_snapshot
from doozer.store.path import validate_path
from doozer.store.tree import Store
from doozer.store.types import Event

FAR = 10**9
_requests = itertools.count(1)


def S(path: str, value: bytes = b"v") -> bytes:
    return mut.set_("t", next(_requests), path, value, until=FAR).encode()


def D(path: str) -> bytes:
    return mut.delete("t", next(_requests), path, until=FAR).encode()


def reference_load(data: bytes, hist: int) -> Store:
    """How load() built the base tree before: one ``Store._set`` per file,
    then the history that made was thrown away. The fast path must make
    exactly this store."""
    doc = msgpack.unpackb(data, raw=False)
    store = Store(hist)
    for path, rev, value in doc["files"]:
        store._set(validate_path(path), value, rev, store._files.get(path))
    store.history.restart(doc["base"])
    return _replay_events(store, doc)


def _replay_events(store: Store, doc: dict[str, Any]) -> Store:
    """The history window on top of the base tree, as load() does it."""
    store.rev = doc["base"]
    for rev, path, op, value in doc["events"]:
        if rev == store.oldest and rev >= 1:
            store.history.add_event(Event(rev, path, op, value))
            continue
        store.rev = rev
        old = store._files.get(path)
        if op == "set":
            store._set(path, value, rev, old)
        else:
            store._delete(path, rev, old)
    store.rev = doc["rev"]
    store.seqn = doc["seqn"]
    return store


def state(store: Store) -> dict[str, Any]:
    """Everything a store holds but its waiters and de-duplication record."""
    return {
        "rev": store.rev, "seqn": store.seqn, "oldest": store.oldest,
        "files": store._files, "dirs": store._dirs, "hist": store.history._paths,
        "touched": store.history._touched, "changes": list(store.history._changes),
        "events": store.history.log, "event_revs": store.history._log_revs,
        "live": store._live_bytes, "history": store.history.bytes, "cal": store.cal(),
        "leases": store.leases.dump(),
    }


def busy_store(hist: int = 5) -> Store:
    store = Store(hist=hist)
    store.apply([S("/ctl/cal/0", b"A"), S("/ctl/cal/1", b"B")], 1)
    store.apply([S("/a/b/c", b"1"), S("/a/b/d", b"2"), S("/a/e", b"3"), S("/top", b"t")], 2)
    store.apply([D("/a/b/c"), S("/x/y/z", b"deep")], 3)
    for n in range(4, 12):
        store.apply([S(f"/n/{n % 3}", b"%d" % n), S(f"/m/{n}", b"")], n)
    store.apply([D("/a/b/d"), D("/ctl/cal/1")], 12)
    return store


def test_a_loaded_store_is_the_one_dumped() -> None:
    """The base tree, the history window, the CAL, reads at old revs."""
    store = busy_store()
    data = store_snapshot.dump(store)
    loaded = store_snapshot.load(data, hist=5)
    assert state(loaded) == state(store)
    assert state(loaded) == state(reference_load(data, 5))
    for rev in range(store.oldest, store.rev + 1):
        assert loaded.walk("/**", rev) == store.walk("/**", rev)
    assert store_snapshot.dump(loaded) == data


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["set", "del"]),
                          st.sampled_from(["/a", "/b/c", "/b/d", "/e/f/g", "/e/h", "/ctl/cal/0"]),
                          st.binary(max_size=3)), min_size=1, max_size=40),
       st.integers(min_value=1, max_value=8))
def test_any_store_loads_as_the_reference_loader_made_it(ops: list[tuple[str, str, bytes]],
                                                          hist: int) -> None:
    store = Store(hist=hist)
    for seqn, (op, path, value) in enumerate(ops, 1):
        store.apply([S(path, value) if op == "set" else D(path)], seqn)
    data = store_snapshot.dump(store)
    loaded = store_snapshot.load(data, hist=hist)
    assert state(loaded) == state(store) == state(reference_load(data, hist))


@pytest.mark.parametrize("files, problem", [
    ([["/a", 1, b"x"], ["/a", 2, b"y"]], "twice"),
    ([["/a", 1, b"x"], ["/a/b", 2, b"y"]], "file and a directory"),
    ([["/a/b", 1, b"x"], ["/a", 2, b"y"]], "file and a directory"),
    ([["/a", 1, "text"]], "wrong type"),
    ([["/a", "1", b"x"]], "wrong type"),
    ([["a", 1, b"x"]], "must start with"),
])
def test_a_malformed_base_tree_is_refused(files: list[Any], problem: str) -> None:
    doc = {"version": 3, "base": 2, "rev": 2, "seqn": 1, "files": files, "events": [], "keys": []}
    with pytest.raises(ValueError, match=problem):
        store_snapshot.load(msgpack.packb(doc, use_bin_type=True))
