"""Restore (doozer/node/restore.py, SPEC §8): a data dir made from a backup
starts a new one-member cluster holding the backup's files at their revs."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from twisted.internet.task import Clock

from doozer.errors import DoozerError
from doozer.node import build_node
from doozer.node.datadir import DataDir
from doozer.node.restore import RestoreError, restore, restored_store
from doozer.store import backup as store_backup
from doozer.store import mutation
from doozer.server.config import Config
from doozer.storage.writer import SynchronousRunner
from doozer.store.tree import Store
from node.test_datadir import durable_node, settle


def _store() -> Store:
    """A store as a three-member cluster's: bookkeeping and user files."""
    store = Store(hist=100)
    writes = [
        ("/ctl/name", b"prod"),
        ("/ctl/cal/0", b"OLDA"),
        ("/ctl/cal/1", b"OLDB"),
        ("/ctl/cal/2", b"OLDC"),
        ("/ctl/node/OLDA/addr", b"10.0.0.1:8046"),
        ("/ctl/node/OLDB/addr", b"10.0.0.2:8046"),
    ]
    writes += [(f"/app/{i}", f"v{i}".encode()) for i in range(30)]
    writes += [("/app/3", b"changed"), ("/app/7", b"changed")]
    for n, (path, value) in enumerate(writes):
        item = mutation.Mutation(mutation.SET, "c", n, path, value, until=10**9).encode()
        store.apply([item])
    gone = mutation.Mutation(mutation.DEL, "c", 999, "/app/5", until=10**9)
    store.apply([gone.encode()])
    return store


def _backup_file(tmp_path: Any, store: Store) -> str:
    path = str(tmp_path / "backup")
    with open(path, "wb") as f:
        for piece in store_backup.chunks(store, cluster="prod", cluster_id="OLDID", node="OLDA"):
            f.write(piece)
    return path


def _files(store: Store, rev: int) -> dict[str, tuple[int, bytes]]:
    return {f.path: (f.rev, f.value) for f in store.walk("/**", rev)}


def test_the_restored_store_keeps_every_file_at_its_rev_and_starts_history_there() -> None:
    old = _store()
    backup = store_backup.decode(b"".join(store_backup.chunks(old, cluster="prod")))
    new = restored_store(backup, "prod", "NEWID")
    r = old.rev
    user = {p: v for p, v in _files(old, r).items() if not p.startswith("/ctl/")}
    assert {p: v for p, v in _files(new, r).items() if not p.startswith("/ctl/")} == user
    assert _files(new, r) == _files(old, r)  # at the backup's rev: exactly the backup
    assert new.oldest == r
    with pytest.raises(DoozerError) as e:
        new.get("/app/1", r - 1)
    assert e.value.code == "TOO_LATE"
    # The bookkeeping, rewritten above the backup's rev, one rev each.
    assert new.rev == r + 5  # cal/0, cal/1 and cal/2 emptied, two node records gone
    head = _files(new, new.rev)
    assert head["/ctl/cal/0"][1] == b"NEWID" and head["/ctl/cal/0"][0] > r
    assert head["/ctl/cal/1"][1] == b"" and head["/ctl/cal/2"][1] == b""
    assert not any(p.startswith("/ctl/node/") for p in head)
    assert new.cal() == ["NEWID"]
    assert new.seqn == 0
    # A watch from the backup's rev sees its last change, then the rewrite.
    events = new.events("/**", r, 100)
    assert [e.rev for e in events] == list(range(r, new.rev + 1))
    assert events[0].path == "/app/5" and events[0].op == "del"


def test_a_new_cluster_name_is_written() -> None:
    backup = store_backup.decode(b"".join(store_backup.chunks(_store(), cluster="prod")))
    new = restored_store(backup, "staging", "NEWID")
    assert new.get("/ctl/name").value == b"staging"  # type: ignore[union-attr]


def test_a_restored_dir_starts_a_one_member_cluster_from_the_backup(tmp_path: Any) -> None:
    old = _store()
    made = restore(_backup_file(tmp_path, old), str(tmp_path / "data"), fsync=False)
    assert made.cluster == "prod" and made.cluster_id != "OLDID"
    assert made.backup_rev == old.rev and made.rev == old.rev + 5
    assert sorted(os.listdir(made.directory)) == ["identity", "snapshot-0000000000000000"]

    clock = Clock()
    # The node is started with the restored cluster's name (--cluster prod).
    data = DataDir(made.directory, "prod", fsync=False)
    data.open()
    assert data.restarting and data.identity is not None
    assert data.identity.node_id == made.node_id and data.incarnation == 2
    node = _resume(data, clock)
    settle(clock)
    assert node.id == made.node_id and node.member and node.voting
    assert node.store.rev >= made.rev
    for path, (rev, value) in _files(old, old.rev).items():
        if not path.startswith("/ctl/"):
            got = node.store.get(path)
            assert (got.rev, got.value) == (rev, value)  # type: ignore[union-attr]
    written: list[int] = []
    node.set("/after", b"x", mutation.CLOBBER).addCallback(written.append)
    settle(clock)
    assert written and written[0] > made.rev
    # It wrote its own record, the only one under /ctl/node.
    assert node.store.getdir("/ctl/node") == [made.node_id]


def _resume(data: DataDir, clock: Clock) -> Any:
    """The node twistd builds for a restarting data dir."""
    data.start(clock, SynchronousRunner())
    assert data.identity is not None
    node = build_node(Config(cluster="prod", pulse=0), clock, data.identity.node_id,
                      rng=random.Random(1), data=data)
    node.storage.resume()
    return node


def test_restore_refuses_a_dir_that_is_not_empty(tmp_path: Any) -> None:
    clock = Clock()
    durable_node(str(tmp_path / "node"), clock)
    settle(clock)
    with pytest.raises(RestoreError, match="is not empty .* give an empty or new directory"):
        restore(_backup_file(tmp_path, _store()), str(tmp_path / "node"), fsync=False)


@pytest.mark.parametrize("damage", ["flip", "cut", "missing"])
def test_restore_refuses_a_damaged_or_missing_backup(tmp_path: Any, damage: str) -> None:
    path = _backup_file(tmp_path, _store())
    data = bytearray(open(path, "rb").read())
    if damage == "flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "cut":
        del data[-1:]
    with open(path, "wb") as f:
        f.write(data)
    if damage == "missing":
        os.unlink(path)
    expected = "cannot read the backup" if damage == "missing" else "is not a whole doozer backup"
    with pytest.raises(RestoreError, match=expected):
        restore(path, str(tmp_path / "data"), fsync=False)
    assert not os.path.exists(tmp_path / "data") or not os.listdir(tmp_path / "data")


def test_leases_and_their_files_are_restored() -> None:
    old = _store()
    grant = mutation.Mutation(mutation.GRANT, "c", 500, until=10**9, lease="L1", ttl=30)
    attach = mutation.Mutation(mutation.SET, "c", 501, "/svc/a", b"up", until=10**9, lease="L1")
    old.apply([grant.encode(), attach.encode()])
    backup = store_backup.decode(b"".join(store_backup.chunks(old, cluster="prod")))
    new = restored_store(backup, "prod", "NEWID")
    assert new.leases.dump() == old.leases.dump()
    assert new.get("/ctl/lease/L1").rev == old.get("/ctl/lease/L1").rev  # type: ignore[union-attr]
