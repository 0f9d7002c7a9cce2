"""The lease table (doozer/store/leases.py): attachments, bases, snapshots."""

from __future__ import annotations

import pytest

from doozer.store.leases import Leases


def test_attach_moves_a_file_between_leases_and_end_returns_its_files() -> None:
    t = Leases()
    t.grant("A", 10, (1, 0))
    t.grant("B", 5, (1, 1))
    t.attach("/x", "A")
    t.attach("/y", "A")
    t.attach("/x", "B")  # a later write with another lease moves it
    assert t.lease_of("/x") == "B" and t.get("A").files == {"/y"}  # type: ignore[union-attr]
    t.attach("/y", None)  # a write without a lease detaches
    assert t.lease_of("/y") is None and t.get("A").files == set()  # type: ignore[union-attr]
    t.attach("/z", "B")
    assert t.end("B") == ["/x", "/z"]
    assert t.lease_of("/x") is None and t.get("B") is None and len(t) == 1


def test_renew_moves_the_basis_and_changes_are_reported_once() -> None:
    t = Leases()
    t.grant("A", 10, (1, 0))
    assert t.renew("A", (3, 2)) and not t.renew("gone", (3, 3))
    assert t.get("A").basis == (3, 2)  # type: ignore[union-attr]
    t.end("A")
    assert t.take_changes() == [("A", (1, 0)), ("A", (3, 2)), ("A", None)]
    assert t.take_changes() == []


def test_a_dump_loads_back_and_bad_rows_are_refused() -> None:
    t = Leases()
    t.grant("A", 10, (4, 1))
    t.attach("/a", "A")
    t.attach("/b", "A")
    loaded = Leases.load(t.dump(), {"/a", "/b"})
    assert loaded.dump() == t.dump() and loaded.lease_of("/b") == "A"
    assert loaded.take_changes() == []
    for rows in ("x", [["A", 10, 4, 1]], [["A", 0, 4, 1, []]], [["A/B", 10, 4, 1, []]],
                 [["A", 10, 4, 1, ["/missing"]]], [["A", 10, 4, 1, []], ["A", 10, 4, 1, []]],
                 [["A", 10, 4, 1, ["/a"]], ["B", 10, 4, 1, ["/a"]]]):
        with pytest.raises(ValueError):
            Leases.load(rows, {"/a"})
