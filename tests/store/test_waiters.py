"""Tests for doozer.store's watches (doozer/store/waiters.py): what wakes them, what they get, cancels."""

from __future__ import annotations

from twisted.internet.defer import CancelledError

from doozer.store import Event, Store
from storeutil import D, N, S, result


# ---------------------------------------------------------------- watches


def test_events_filters_by_glob_rev_and_limit() -> None:
    """events() returns matching set/del events from from_rev, oldest first, up to limit."""
    store = Store()
    store.apply([S("/a/x", b"1"), S("/b"), D("/a/x"), S("/a/y", b"2")])
    assert store.events("/a/*", 1, 10) == [
        Event(1, "/a/x", "set", b"1"), Event(3, "/a/x", "del", None), Event(4, "/a/y", "set", b"2")]
    assert [e.rev for e in store.events("/a/*", 2, 10)] == [3, 4]
    assert [e.rev for e in store.events("/**", 1, 2)] == [1, 2]
    assert store.events("/**", 5, 10) == []


def test_watch_fires_at_once_when_events_exist() -> None:
    """A watch whose events are already in the log fires immediately."""
    store = Store()
    store.apply([S("/a")])
    assert result(store.watch("/a", 1, 5)) == [Event(1, "/a", "set", b"v")]
    assert store.watcher_count() == 0


def test_watch_waits_for_a_matching_change_only() -> None:
    """A waiting watch ignores non-matching changes, NOPs and failures, then fires."""
    store = Store()
    d = store.watch("/a/*", 1, 5)
    fired: list = []
    d.addCallback(fired.append)
    store.apply([S("/b"), N(), D("/a/zz"), S("/a/b/c")])
    assert fired == [] and store.watcher_count() == 1
    store.apply([S("/a/q", b"1"), S("/a/r", b"2")])
    assert fired == [[Event(5, "/a/q", "set", b"1"), Event(6, "/a/r", "set", b"2")]]
    assert store.watcher_count() == 0


def test_watch_fires_after_whole_batch() -> None:
    """Watchers fire once the whole batch is applied, seeing every event in it."""
    store = Store()
    seen: list = []
    store.watch("/**", 1, 10).addCallback(lambda evs: seen.append((store.rev, len(evs))))
    store.apply([S("/a"), S("/b"), S("/c")])
    assert seen == [(3, 3)]


def test_watches_asking_the_same_get_one_list_others_their_own() -> None:
    """One batch answers every watch of the same (glob, from rev, limit) with
    the same list (a front end renders it once); a watch asking otherwise
    gets its own answer."""
    store = Store()
    same = [store.watch("/k/**", 1, 10) for _ in range(3)]
    later = store.watch("/k/**", 2, 10)
    one = store.watch("/k/**", 1, 1)
    store.apply([S("/k/a", b"1"), S("/k/b", b"2")])
    lists = [result(d) for d in same]
    assert lists[0] is lists[1] is lists[2]
    assert [e.path for e in lists[0]] == ["/k/a", "/k/b"]
    assert [e.path for e in result(later)] == ["/k/b"]
    assert [e.path for e in result(one)] == ["/k/a"]


def test_watch_from_future_rev() -> None:
    """A watch from a future rev ignores matching changes before that rev."""
    store = Store()
    d = store.watch("/a", 3, 1)
    store.apply([S("/a"), S("/a")])
    assert not d.called
    store.apply([S("/a")])
    assert [e.rev for e in result(d)] == [3]


def test_cancelled_watch_leaves_nothing_behind() -> None:
    """Cancelling a waiting watch fails it with CancelledError and empties the index."""
    store = Store()
    watches = [store.watch(g, 1, 1) for g in ("/a", "/a/*", "/**", "/a/b/**")]
    for d in watches:
        d.addErrback(lambda f: f.trap(CancelledError))
        d.cancel()
    assert store.waiters._watchers == {}
    store.apply([S("/a/b/c")])  # nothing left to fire
    assert store.waiters._watchers == {}


def test_bad_watch_arguments_fail_the_deferred() -> None:
    """A bad glob or limit fails the returned Deferred instead of raising."""
    store = Store()
    assert result(store.watch("/a/", 1, 1)).value.code == "BAD_GLOB"
    assert result(store.watch("/a", 1, 0)).check(ValueError)


def test_two_thousand_waiters_one_write_wakes_only_matching() -> None:
    """With 2,000 waiters on distinct paths, one write fires exactly those that match it."""
    store = Store()
    waiters = {}
    for i in range(2000):
        glob = f"/w/{i}" if i % 2 else f"/w/{i}/**"
        waiters[glob] = store.watch(glob, 1, 10)
    wide = store.watch("/w/*", 1, 10)
    store.apply([S("/w/7"), S("/other")])
    fired = [g for g, d in waiters.items() if d.called]
    assert fired == ["/w/7"]
    assert wide.called
    assert store.watcher_count() == 1999
    store.apply([S("/w/8/x")])
    assert [g for g, d in waiters.items() if d.called] == ["/w/7", "/w/8/**"]
    for d in waiters.values():
        if not d.called:
            d.addErrback(lambda f: None)
            d.cancel()
    assert store.waiters._watchers == {}


def test_wait_rev_fires_when_reached_and_cancels() -> None:
    """wait_rev fires with the rev once reached; a cancelled one is forgotten."""
    store = Store()
    assert result(store.wait_rev(0)) == 0
    d2, d3 = store.wait_rev(2), store.wait_rev(3)
    gone = store.wait_rev(2)
    gone.addErrback(lambda f: f.trap(CancelledError))
    gone.cancel()
    store.apply([N()])
    assert not d2.called
    store.apply([N(), N()])
    assert result(d2) == 3 and result(d3) == 3
    assert store.waiters._revs == {}
