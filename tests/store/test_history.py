"""Tests for doozer.store.history: a store's history window on its own
(states at old revs, the event log, its bytes, pruning, TOO_LATE)."""

from __future__ import annotations

import pytest

from doozer.errors import DoozerError
from doozer.store.path import compile_glob
from doozer.store.history import DIR, HEAD, History
from doozer.store.types import Event, File


def write(h: History, path: str, old: File | None, value: bytes | None, rev: int) -> File | None:
    """Tell ``h`` that file ``path`` was set to ``value`` (None: deleted) at ``rev``."""
    new = File(path, rev, value) if value is not None else None
    h.changed(path, old, new, Event(rev, path, "set" if new else "del", value))
    return new


def test_states_at_old_revs_and_head_when_unchanged_since() -> None:
    """A path's state holds from the rev it took until the next change; a
    rev at or after its last change, or a path never changed, reads as HEAD."""
    h = History(100)
    a1 = write(h, "/a", None, b"1", 1)
    h.record("/", None, DIR, 1)
    a3 = write(h, "/a", a1, b"2", 3)
    write(h, "/a", a3, None, 5)
    assert h.at("/a", 0) is None
    assert h.at("/a", 1) == a1 == h.at("/a", 2)
    assert h.at("/a", 3) == a3 == h.at("/a", 4)
    assert h.at("/a", 5) is HEAD and h.at("/a", 9) is HEAD
    assert h.at("/", 0) is None and h.at("/", 1) is HEAD
    assert h.at("/never", 0) is HEAD


def test_log_and_bytes_count_paths_and_values() -> None:
    """Each change is one event in rev order; a set counts its path and value,
    a delete its path, a base event (add_event) likewise."""
    h = History(100)
    f = write(h, "/ab", None, b"xyz", 1)
    write(h, "/ab", f, None, 2)
    h.add_event(Event(3, "/c", "set", b"12"))
    assert [(e.rev, e.op) for e in h.log] == [(1, "set"), (2, "del"), (3, "set")]
    assert h.bytes == (3 + 3) + 3 + (2 + 2)


def test_events_from_a_rev_by_match_up_to_a_limit() -> None:
    h = History(100)
    old = {}
    for rev, path in enumerate(["/a/x", "/b", "/a/y", "/a/x", "/b"], start=1):
        old[path] = write(h, path, old.get(path), b"v", rev)
    under_a = compile_glob("/a/*")
    assert [e.rev for e in h.events(under_a, 1, 10)] == [1, 3, 4]
    assert [e.rev for e in h.events(under_a, 2, 10)] == [3, 4]
    assert [e.rev for e in h.events(under_a, 1, 2)] == [1, 3]
    assert h.events(compile_glob("/c"), 1, 10) == []


def test_prune_waits_for_a_batch_then_keeps_exactly_the_window() -> None:
    """Nothing is forgotten until a quarter of ``keep`` revs are past the
    window; then states and events before the new oldest go (the state at
    oldest stays answerable), with their bytes, and paths unchanged in the
    window have no history left."""
    h = History(8)  # prunes in batches of 2 revs
    f = None
    for rev in range(1, 10):
        f = write(h, "/f", f, b"%d" % rev, rev)
    write(h, "/g", None, b"g", 10)
    h.prune(9)
    assert h.oldest == 2 and h.kept_paths() == {"/f", "/g"}
    h.prune(10)  # oldest would be 3: less than a batch on
    assert h.oldest == 2
    h.prune(16)
    assert h.oldest == 9
    assert h.at("/f", 9) is HEAD  # unchanged in the window: the head says it
    assert h.kept_paths() == {"/g"}
    assert h.at("/g", 9) is None
    assert [e.rev for e in h.log] == [9, 10]
    assert h.bytes == (2 + 1) * 2
    h.prune(25)
    assert h.oldest == 18 and h.kept_paths() == set() and h.log == [] and h.bytes == 0


def test_touched_names_the_entries_changed_in_the_window() -> None:
    h = History(4)
    write(h, "/d/a", None, b"", 1)
    h.record("/d", None, DIR, 1)
    write(h, "/d/b", None, b"", 2)
    assert h.touched("/d") == {"a", "b"} and h.touched("/") == {"d"}
    assert h.touched("/e") is None
    h.prune(10)
    assert not h.touched("/d") and not h.touched("/")


def test_too_late_names_oldest() -> None:
    h = History(4)
    for rev in range(1, 11):
        write(h, f"/f{rev}", None, b"", rev)
    h.prune(10)
    assert h.oldest == 7
    h.check_not_too_late(7)
    with pytest.raises(DoozerError) as info:
        h.check_not_too_late(6)
    assert info.value.code == "TOO_LATE" and info.value.extra == {"oldest": 7}


def test_restart_forgets_everything_and_starts_at_oldest() -> None:
    """What a store holds when restarted is the base: no history before it."""
    h = History(100)
    write(h, "/a", None, b"1", 1)
    h.restart(5)
    assert (h.oldest, h.log, h.bytes, h.kept_paths()) == (5, [], 0, set())
    assert h.at("/a", 5) is HEAD and h.touched("/") is None


def test_keep_must_be_at_least_one() -> None:
    with pytest.raises(ValueError):
        History(0)
