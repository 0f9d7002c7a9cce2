"""The fire drill of docs/operations.md, with real processes: a cluster lost
its quorum for good; back up a survivor, restore, rejoin (SPEC §8)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from process.test_cluster_process import (
    Cluster,
    cli,
    get_value,
    is_member,
    node_id,
    put,
    rev,
    same_store,
    slots,
    wait_for,
)
from process.test_datadir_process import all_files, kill9

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Any) -> Any:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def test_fire_drill_lost_quorum_backup_a_survivor_restore_rejoin(cluster: Any, tmp_path: Any) -> None:
    a, b, c = cluster.start(3, "--data-dir", "data", "--timeout", "30")
    acked: dict[str, int] = {}
    for i in range(60):
        status, body = put((a, b, c)[i % 3], f"/app/{i}", str(i).encode(), timeout=10)
        assert status == 200, body
        acked[f"/app/{i}"] = int(body["rev"])
    wait_for("the survivor to apply every write", lambda: rev(a) >= max(acked.values()))

    # Two of three are lost for good, data dirs and all: no quorum, ever.
    old_ids = {node_id(n) for n in (a, b, c)}
    for lost in (b, c):
        kill9(lost)
        shutil.rmtree(os.path.join(lost.workdir, "data"))
    assert get_value(a, "/app/59") == "59"  # the survivor still serves reads

    # 1. Back up the survivor while it serves.
    backup = str(tmp_path / "drill.backup")
    done = cli(a, "backup", backup)
    assert done.returncode == 0, done.stderr
    backup_rev = int(done.stdout.split()[0])
    assert backup_rev >= max(acked.values())

    # 2. Restore it offline into a new data dir; the survivor is retired.
    a.stop()
    restored_dir = str(tmp_path / "r0" / "data")
    done = cli(a, "restore", backup, "--data-dir", restored_dir)
    assert done.returncode == 0, done.stderr
    assert b"twistd doozer --data-dir" in done.stdout, done.stdout

    # 3. A node started from it is a one-member cluster holding every write
    # at its rev; reads from before the backup's rev are TOO_LATE.
    r0 = cluster.node([], "--data-dir", "data", "--timeout", "30", name="r0")
    r0.wait_up()
    wait_for("the restored node to vote", r0.votes, 30)
    assert node_id(r0) not in old_ids
    files = all_files(r0, rev(r0))
    for path, at in acked.items():
        assert files[path] == (at, path.rsplit("/", 1)[1]), path
    assert rev(r0) > backup_rev
    status, body = r0.request("GET", f"/v1/store/app/1?rev={backup_rev - 1}")
    assert body["error"] == "TOO_LATE", (status, body)
    status, body = r0.request("GET", f"/v1/watch?glob=/app/*&rev={backup_rev - 1}&timeout=1")
    assert body["error"] == "TOO_LATE", (status, body)
    status, body = put(r0, "/after-restore", b"x")
    assert status == 200 and int(body["rev"]) > backup_rev, body
    assert slots(r0) == {0: node_id(r0)}
    status, body = r0.request("GET", "/v1/walk?glob=/ctl/cal/*")
    assert sorted((f["path"], f["value"]) for f in body["files"]) == [
        ("/ctl/cal/0", node_id(r0)), ("/ctl/cal/1", ""), ("/ctl/cal/2", "")], body

    # 4. Two new nodes join it and take the free slots: three voters again.
    joiners = [cluster.node([r0], "--data-dir", "data", "--timeout", "30", name=f"j{i}")
               for i in range(2)]
    for j in joiners:
        j.wait_up()
        wait_for(f"{j.addr} to become a voting member", j.votes, 30)
        assert is_member(j)
    nodes = [r0, *joiners]
    assert sorted(slots(r0).values()) == sorted(node_id(n) for n in nodes)
    # It can lose one again: writes go on with a joiner killed.
    kill9(joiners[1])
    status, body = put(joiners[0], "/after-join", b"y", timeout=10)
    assert status == 200, body
    wait_for("the write on the restored node", lambda: get_value(r0, "/after-join") == "y")
    same_store([r0, joiners[0]])
