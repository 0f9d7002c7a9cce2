"""Restore: a data dir made from a backup, for a new one-member cluster (SPEC §8).

``doozer restore FILE --data-dir DIR [--cluster NAME]`` runs this offline.
The dir it prepares is what a node leaves when it first joins a cluster
(:meth:`doozer.node.datadir.DataDir.attach`): an identity (a **new**
cluster id and node id, incarnation 1) and a snapshot of instance 0 whose
only member is that node. ``twistd doozer --data-dir DIR`` then restarts
"its" node from it, as after any restart, and other nodes join with
``--peers`` (SPEC §5).

What the restored store holds:

- every file of the backup at its rev (the tree at the backup's rev ``R``);
- history from ``R`` only: reads and watches from before ``R`` get
  ``TOO_LATE`` (the old cluster's changes after ``R``, if any, are lost, so
  a watcher of the old cluster must read afresh rather than resume as if
  nothing were missing); a watch from ``R`` still sees the change at ``R``;
- the cluster's bookkeeping rewritten, each change at its own rev above
  ``R``: ``/ctl/name`` the cluster's name, ``/ctl/cal/0`` the new node,
  every other slot of the backup's CAL emptied (free, so that as many
  nodes as the old cluster had can join it), and the old nodes'
  ``/ctl/node/<id>`` records deleted (the new node writes its own at
  start). So the next rev is above every rev in the backup.

Nothing of the old cluster's consensus state comes along: no log, no
de-duplication record (a new cluster's request ids are its own).
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from typing import Any, Optional

import msgpack

from doozer.node.snapshotfile import write_snapshot
from doozer.node.snapshot import Snapshot
from doozer.store import backup as store_backup
from doozer.store import snapshot as store_snapshot
from doozer.store.cal import CAL_DIR, slot_of_path
from doozer.store.tree import Store
from doozer.storage import identity as identity_file
from doozer.storage.files import fsync_directory, read_whole

__all__ = ["RestoreError", "Restored", "restore", "restored_store"]

#: The new cluster's α (doozer's default, as a genesis node's).
ALPHA = 50


class RestoreError(Exception):
    """A restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Restored:
    """What :func:`restore` made."""

    directory: str
    cluster: str
    cluster_id: str
    node_id: str
    #: the backup's rev: reads from before it get TOO_LATE
    backup_rev: int
    #: the restored store's rev (the backup's plus the bookkeeping changes)
    rev: int
    #: the files the backup held (the restored store adds its bookkeeping)
    files: int


def restored_store(backup: store_backup.BackupContents, cluster: str, node_id: str,
                   hist: int = 2000) -> Store:
    """The store a restored cluster starts from (the module's docstring).

    :param hist: the history window of the returned store (the node that
        starts from it keeps its own ``--hist``).
    """
    source = backup.store
    base = backup.rev
    files = source.walk("/**", base) if base >= 1 else []
    events = source.events("/**", base, limit=len(files) + 1) if base >= 1 else []
    changes: list[list[Any]] = []
    rev = base
    head = {f.path: f.value for f in files}

    def change(path: str, op: str, value: Optional[bytes]) -> None:
        nonlocal rev
        rev += 1
        changes.append([rev, path, op, value])

    if head.get("/ctl/name") != cluster.encode():
        change("/ctl/name", "set", cluster.encode())
    slots = [p for p in head if slot_of_path(p) is not None]
    if head.get(CAL_DIR + "/0") != node_id.encode():
        change(CAL_DIR + "/0", "set", node_id.encode())
    for path in slots:
        if path != CAL_DIR + "/0" and head[path] != b"":
            change(path, "set", b"")
    for path in sorted(p for p in head if p.startswith("/ctl/node/")):
        change(path, "del", None)
    doc = {
        "version": 3,
        "base": base,
        "rev": rev,
        "seqn": 0,
        "files": [[f.path, f.rev, f.value] for f in files],
        "events": [[e.rev, e.path, e.op, e.value] for e in events if e.rev == base] + changes,
        "keys": [],
        # leases go on with their files; each node's timers start afresh (§L3)
        "leases": source.leases.dump(),
    }
    # Made as a store snapshot and loaded as one: load checks it as any other.
    return store_snapshot.load(msgpack.packb(doc, use_bin_type=True), hist=hist)


def restore(path: str, directory: str, cluster: Optional[str] = None,
            fsync: bool = True) -> Restored:
    """Prepare ``directory`` from the backup file at ``path``.

    :param cluster: the new cluster's name (default: the backup's).
    :raises RestoreError: an unreadable or damaged backup, or a data dir
        that is not new (restore never writes over a node's state).
    """
    try:
        data = read_whole(path)
    except OSError as e:
        raise RestoreError(f"cannot read the backup {path}: {e.strerror or e}") from None
    try:
        backup = store_backup.decode(data)
    except store_backup.BackupError as e:
        raise RestoreError(
            f"{path} is not a whole doozer backup ({e}); take a new one with "
            "`doozer backup FILE` from any node that still has the data"
        ) from None
    name = cluster if cluster is not None else backup.cluster
    if not name:
        raise RestoreError(f"{path} names no cluster; give one with --cluster NAME")
    directory = os.path.abspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        held = sorted(os.listdir(directory))
    except OSError as e:
        raise RestoreError(f"cannot use {directory} as a data dir: {e.strerror or e}") from None
    if held:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise RestoreError(
            f"{directory} is not empty (it holds {shown}); restore makes a new data dir: "
            "give an empty or new directory"
        )
    cluster_id = base64.b32encode(secrets.token_bytes(10)).decode("ascii")
    node_id = base64.b32encode(secrets.token_bytes(10)).decode("ascii")
    store = restored_store(backup, name, node_id)
    snap = Snapshot(
        cluster=name,
        cluster_id=cluster_id,
        alpha=ALPHA,
        seqn=0,
        members={s: [node_id] for s in range(1, ALPHA + 1)},
        store=store_snapshot.dump(store),
    )
    try:
        # The snapshot first: a dir with an identity and no snapshot is
        # "damaged" at start; one with only a snapshot is simply not made.
        write_snapshot(directory, snap, fsync)
        identity_file.create(directory, name, cluster_id, node_id, fsync)
        if fsync:
            fsync_directory(directory)
    except OSError as e:
        raise RestoreError(
            f"writing {directory} failed ({e.strerror or e}); empty it and restore again"
        ) from None
    return Restored(directory, name, cluster_id, node_id, backup.rev, store.rev, backup.files)
