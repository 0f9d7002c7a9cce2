"""The fault suite's cluster in durable mode, without starting a node:
the nodes' arguments, what a restart refuses, the self-test's lost log,
and the restarts counted in the nodes' logs."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.faults.cluster import Cluster


def cluster(tmp_path: Any, durable: bool) -> Cluster:
    os.makedirs(tmp_path, exist_ok=True)
    return Cluster(3, str(tmp_path), "t", lambda m: None, durable=durable)


def test_durable_nodes_have_a_data_dir_in_their_workdir(tmp_path: Any) -> None:
    c = cluster(tmp_path, durable=True)
    node = c._new(12345, ["127.0.0.1:12346"])
    i = node.args.index("--data-dir")
    assert node.args[i + 1] == os.path.join(node.workdir, "data")
    assert c.starts[node.addr] == 1 and c.all == [node]
    plain = cluster(tmp_path / "plain", durable=False)._new(12347, [])
    assert "--data-dir" not in plain.args


class Running:
    def poll(self) -> None:
        return None


def test_restart_needs_durable_mode_and_a_dead_node(tmp_path: Any) -> None:
    c = cluster(tmp_path, durable=False)
    c.slots.append(c._new(12345, []))
    with pytest.raises(ValueError, match="durable"):
        c.restart(0)
    d = cluster(tmp_path / "d", durable=True)
    d.slots.append(d._new(12346, []))
    d.slots[0].proc = Running()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="still runs"):
        d.restart(0)
    assert d.starts[d.addr(0)] == 1


def test_lose_log_deletes_the_segments_and_keeps_identity_and_snapshots(tmp_path: Any) -> None:
    c = cluster(tmp_path, durable=True)
    c.slots.append(c._new(12345, []))
    data = c.data_dir(c.slots[0].workdir)
    os.makedirs(data)
    names = ["identity", "snapshot-0000000000000100", "log-00000001", "log-00000002"]
    for name in names:
        with open(os.path.join(data, name), "wb") as f:
            f.write(b"x")
    assert c.lose_log(0) == ["log-00000001", "log-00000002"]
    assert sorted(os.listdir(data)) == ["identity", "snapshot-0000000000000100"]


def test_restart_counts_read_the_restarted_nodes_logs(tmp_path: Any) -> None:
    c = cluster(tmp_path, durable=True)
    a, b = c._new(12345, []), c._new(12346, [])
    logs = {
        a: "claiming free CAL slot 1\nrestarts in cluster 't'\nrestarts in cluster 't'\n",
        b: "restarts in cluster 't'\n",  # started once only: not counted
    }
    for node, text in logs.items():
        with open(os.path.join(node.workdir, "node.log"), "w") as f:
            f.write(text)
    c.starts[a.addr] = 3
    assert c.restart_counts() == 2
