"""Bounded pending writes, fair shares and the store quota (doozer/node/admission.py)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from doozer.node.admission import Admission
from doozer.errors import DoozerError
from doozer.testing import single_node
from doozer.store import snapshot as store_snapshot


def code(fn: Any, *args: Any) -> str | None:
    try:
        fn(*args)
    except DoozerError as e:
        return e.code
    return None


def test_the_node_wide_limits_refuse_with_busy() -> None:
    """Past max_count writes or max_bytes, a write is BUSY at once."""
    a = Admission(max_count=3, max_bytes=1000)
    for request in (1, 2, 3):
        assert code(a.admit, request, f"c{request}", 10, True) is None
    assert code(a.admit, 4, "c4", 10, True) == "BUSY"
    a.release(1)
    assert code(a.admit, 4, "c4", 10, True) is None
    assert code(a.admit, 5, "c5", 2000, True) == "BUSY"
    assert a.refused["busy"] == 2


def test_one_client_holds_at_most_a_fair_share() -> None:
    """Alone, a client may fill half the node; with k writers, 1/(k+1)
    each: there is always room for another client's write [one pipelining
    writer made another client's 1-byte PUT time out]."""
    a = Admission(max_count=100, max_bytes=10**9)
    admitted = 0
    for request in range(1, 101):
        if code(a.admit, request, "flood", 1, True) is None:
            admitted += 1
    assert admitted == 50  # half of the node alone
    assert code(a.admit, 1000, "other", 1, True) is None  # room for another
    assert code(a.admit, 1001, "other", 1, True) is None
    assert a.refused["busy_share"] == 50
    for request in range(1, 51):
        a.release(request)
    assert a.state()["pending"] == 2 and a.state()["writers"] == 1


def test_bytes_are_shared_too() -> None:
    a = Admission(max_count=10**6, max_bytes=1000)
    assert code(a.admit, 1, "flood", 400, True) is None
    assert code(a.admit, 2, "flood", 200, True) == "BUSY"  # over its half
    assert code(a.admit, 3, "other", 300, True) is None


def test_the_quota_refuses_growth_but_never_deletes() -> None:
    size = [900]
    a = Admission(quota=1000, store_size=lambda: size[0])
    assert code(a.admit, 1, "c", 50, True) is None
    assert code(a.admit, 2, "c", 60, True) == "NOSPACE"  # 900 + 50 pending + 60
    assert code(a.admit, 3, "c", 60, False) is None  # a delete, a no-op
    size[0] = 0
    assert code(a.admit, 4, "c", 60, True) is None


def test_a_node_answers_busy_and_releases_on_decision() -> None:
    """On a node: writes past the limit are BUSY without being proposed;
    decided writes free their place."""
    clock = Clock()
    node = single_node(clock)
    node.admission.max_count = 2
    held: list = []
    node.sequencer.propose = lambda item, now: held.append(item)  # nothing decided
    failed: list = []
    node.set("/a", b"1", client="c1").addErrback(failed.append)
    node.set("/b", b"1", client="c2").addErrback(failed.append)
    with pytest.raises(DoozerError) as busy:
        node.set("/c", b"1", client="c3")
    assert busy.value.code == "BUSY" and len(held) == 2
    node.stop()
    assert node.admission.state()["pending"] == 0 and len(failed) == 2


def test_a_node_refuses_a_write_past_its_quota_but_deletes() -> None:
    clock = Clock()
    node = single_node(clock)
    node.admission.quota = node.store.size + 100
    results: list = []
    node.set("/small", b"x" * 10, client="c").addBoth(results.append)
    clock.advance(0)
    with pytest.raises(DoozerError) as full:
        node.set("/big", b"x" * 200, client="c")
    assert full.value.code == "NOSPACE"
    node.delete("/small", client="c").addBoth(results.append)
    clock.advance(0)
    assert all(isinstance(r, int) for r in results)
    assert node.admission.state()["pending"] == 0


def test_the_store_counts_files_and_history() -> None:
    """Store.size counts the paths and values of the files and of the
    changes in the history window, and falls as history is pruned."""
    from doozer.store import mutation
    from doozer.store import Store

    store = Store(hist=4)
    item = lambda i, v: mutation.set_("t", i, "/f", v, until=10**9).encode()  # noqa: E731
    store.apply([item(1, b"x" * 100)])
    assert store.size == (2 + 100) * 2
    for i in range(2, 20):
        store.apply([item(i, b"y" * 10)])
    assert store.size < 200 and store.size >= 2 + 10
    copy = store_snapshot.load(store_snapshot.dump(store), hist=4)
    assert copy.size == store.size
