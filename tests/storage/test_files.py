"""Tests for doozer.storage.files: whole files replaced atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from doozer.storage import files


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The file descriptors os.fsync is called with (it still syncs)."""
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_write_creates_and_replaces(tmp_path: Path) -> None:
    """The file holds the new bytes, and no temp file is left."""
    path = str(tmp_path / "f")
    files.write_atomically(path, b"one")
    files.write_atomically(path, b"two")
    assert files.read_whole(path) == b"two"
    assert os.listdir(tmp_path) == ["f"]


def test_write_syncs_file_and_directory(tmp_path: Path, fsyncs: list[int]) -> None:
    """Two fsyncs: the temp file's contents, then the directory's rename."""
    files.write_atomically(str(tmp_path / "f"), b"x")
    assert len(fsyncs) == 2


def test_no_fsync_syncs_nothing(tmp_path: Path, fsyncs: list[int]) -> None:
    """fsync=False (tests only) writes the same file without syncing."""
    files.write_atomically(str(tmp_path / "f"), b"x", fsync=False)
    assert fsyncs == []
    assert files.read_whole(str(tmp_path / "f")) == b"x"


def test_failed_write_keeps_old_contents_and_removes_temp(tmp_path: Path) -> None:
    """A write that fails leaves the old file as it was and no temp file."""
    path = str(tmp_path / "f")
    files.write_atomically(path, b"old")
    with pytest.raises(TypeError):
        files.write_atomically(path, "not bytes")  # type: ignore[arg-type]
    assert files.read_whole(path) == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_remove_temps_removes_only_temps(tmp_path: Path) -> None:
    """A crash's leftover temp file is removed; other files stay."""
    (tmp_path / "identity").write_bytes(b"x")
    (tmp_path / (files.TEMP_PREFIX + "identity.abc")).write_bytes(b"half")
    assert files.remove_temps(str(tmp_path)) == [files.TEMP_PREFIX + "identity.abc"]
    assert os.listdir(tmp_path) == ["identity"]
