"""Tests for doozer.storage.identity: whose data dir it is, the incarnation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from doozer.storage import identity, records
from doozer.storage.errors import DamagedStorage, ForeignDataDir
from doozer.storage.files import TEMP_PREFIX
from doozer.storage.identity import Identity


def test_create_then_load(tmp_path: Path) -> None:
    """A new node's identity reads back as written, at incarnation 1."""
    made = identity.create(str(tmp_path), "example", "c1d2", "n1")
    assert made == Identity("example", "c1d2", "n1", 1)
    assert identity.load(str(tmp_path), cluster="example") == made


def test_bump_persists_across_reload(tmp_path: Path) -> None:
    """Each bump is on disk when it returns: a reload sees the new number."""
    directory = str(tmp_path)
    current = identity.create(directory, "example", "c1d2", "n1")
    for expected in (2, 3):
        current = identity.bump(directory, current)
        assert current.incarnation == expected
        assert identity.load(directory) == current


def test_bump_syncs_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bump fsyncs the new file and the directory holding its rename."""
    current = identity.create(str(tmp_path), "example", "c1d2", "n1")
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    identity.bump(str(tmp_path), current)
    assert len(calls) == 2


def test_empty_dir_is_new(tmp_path: Path) -> None:
    """An empty data dir (or one holding only a crash's temp files) is new."""
    assert identity.load(str(tmp_path)) is None
    (tmp_path / (TEMP_PREFIX + "identity.x")).write_bytes(b"half")
    assert identity.load(str(tmp_path)) is None


def test_create_refuses_an_existing_identity(tmp_path: Path) -> None:
    """A data dir never gets a second identity by mistake."""
    identity.create(str(tmp_path), "example", "c1d2", "n1")
    with pytest.raises(FileExistsError):
        identity.create(str(tmp_path), "example", "c9", "n2")


@pytest.mark.parametrize(
    "expected, field",
    [({"cluster": "other"}, "cluster"), ({"cluster_id": "ffff"}, "cluster_id"),
     ({"node_id": "n2"}, "node_id")],
)
def test_foreign_data_dir_refuses(tmp_path: Path, expected: dict[str, str], field: str) -> None:
    """Another cluster's or node's data dir refuses, saying whose it is and
    what to do, in one line."""
    identity.create(str(tmp_path), "example", "c1d2", "n1")
    with pytest.raises(ForeignDataDir) as caught:
        identity.load(str(tmp_path), **expected)
    message = str(caught.value)
    assert "cluster 'example' (id c1d2) as node 'n1'" in message
    assert f"this node's {field} is {next(iter(expected.values()))!r}" in message
    assert "wipe the data dir and rejoin the cluster as a new node" in message
    assert "\n" not in message


def test_missing_identity_beside_other_files_refuses(tmp_path: Path) -> None:
    """State without an identity is damage, not a new node."""
    (tmp_path / "log").write_bytes(b"x")
    with pytest.raises(DamagedStorage, match="identity: missing, but the data dir holds log"):
        identity.load(str(tmp_path))


def test_damaged_identity_refuses(tmp_path: Path) -> None:
    """A flipped byte or a cut anywhere in the identity file refuses: it is
    written whole, so no crash leaves it torn."""
    identity.create(str(tmp_path), "example", "c1d2", "n1")
    path = identity.path_of(str(tmp_path))
    good = Path(path).read_bytes()
    for at in range(len(good)):
        damaged = bytearray(good)
        damaged[at] ^= 0x01
        Path(path).write_bytes(bytes(damaged))
        with pytest.raises(DamagedStorage):
            identity.load(str(tmp_path))
        Path(path).write_bytes(good[:at])
        with pytest.raises(DamagedStorage):
            identity.load(str(tmp_path))


@pytest.mark.parametrize(
    "doc, problem",
    [([1, 2], "version None"), ({"version": 2}, "version 2"),
     ({"version": 1, "cluster": "a", "cluster_id": "b", "node_id": "", "incarnation": 1}, "'node_id'"),
     ({"version": 1, "cluster": "a", "cluster_id": "b", "node_id": "c", "incarnation": 0}, "'incarnation'"),
     ({"version": 1, "cluster": "a", "cluster_id": "b", "node_id": "c", "incarnation": True}, "'incarnation'")],
)
def test_identity_with_bad_fields_refuses(tmp_path: Path, doc: object, problem: str) -> None:
    """A well-framed file with a wrong version or field refuses, naming it."""
    Path(identity.path_of(str(tmp_path))).write_bytes(records.encode_whole(records.pack(doc)))
    with pytest.raises(DamagedStorage, match=problem):
        identity.load(str(tmp_path))


def test_identity_that_is_not_msgpack_refuses(tmp_path: Path) -> None:
    """A well-framed file whose payload is not msgpack refuses."""
    Path(identity.path_of(str(tmp_path))).write_bytes(records.encode_whole(b"\xc1"))
    with pytest.raises(DamagedStorage, match="not a msgpack payload"):
        identity.load(str(tmp_path))
