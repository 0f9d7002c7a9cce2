"""A node's snapshot files in its data dir: ``snapshot-SSSSSSSSSSSSSSSS``,
the store (with its history window) at instance ``S``, written whole (temp
file, fsync, rename, fsync dir) as a record file of chunks, so that a store
larger than one record fits (:mod:`doozer.node.datadir`)."""

from __future__ import annotations

import os
import re

from doozer.node.snapshot import Snapshot
from doozer.storage import records
from doozer.storage.errors import DamagedStorage
from doozer.storage.files import read_whole, write_atomically

SNAPSHOT_NAME = re.compile(r"^snapshot-(\d{16})$")
#: Bytes of a snapshot in one record of its file (records hold up to 1 MiB).
SNAPSHOT_CHUNK = 512 * 1024


def snapshot_name(seqn: int) -> str:
    """The file name of the snapshot at instance ``seqn``."""
    return f"snapshot-{seqn:016d}"


def snapshot_seqns(directory: str) -> list[int]:
    """The instances of the snapshots in ``directory``, oldest first."""
    found = (SNAPSHOT_NAME.match(n) for n in os.listdir(directory))
    return sorted(int(m.group(1)) for m in found if m)


def write_snapshot(directory: str, snap: Snapshot, fsync: bool) -> str:
    """Write ``snap`` whole and durably; returns its path."""
    data = snap.encode()
    salt = records.new_salt()
    parts = [records.header(salt)]
    for start in range(0, max(len(data), 1), SNAPSHOT_CHUNK):
        parts.append(records.frame(data[start:start + SNAPSHOT_CHUNK], salt))
    path = os.path.join(directory, snapshot_name(snap.seqn))
    write_atomically(path, b"".join(parts), fsync)
    return path


def read_snapshot(path: str) -> Snapshot:
    """:raises DamagedStorage: a snapshot file that is not whole and good."""
    contents = records.scan(read_whole(path), path, torn_ok=False)
    try:
        return Snapshot.decode(b"".join(contents.records))
    except ValueError as e:
        raise DamagedStorage(path, f"not a snapshot ({e})") from None
