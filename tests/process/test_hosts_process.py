"""Nodes named by IPv6 address and by host name, as real processes (SPEC §5).

``--listen`` and ``--peers`` take ``[::1]:PORT`` and host names (here
``localhost``, which every machine resolves to 127.0.0.1); a name that does
not resolve stops the node at start-up with a line saying so and a
non-zero exit status.
"""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import pytest

from procutil import ROOT, TWISTD, NodeProcess, cluster_key_file, start_voting, wait_for

pytestmark = pytest.mark.slow


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def two_node_cluster(tmp_path: Any, host: str) -> list[NodeProcess]:
    """Two nodes on ``host``, each naming the other in ``--peers``."""
    key = cluster_key_file(tmp_path)
    a = NodeProcess(str(tmp_path / "a"), host=host)
    b = NodeProcess(str(tmp_path / "b"), host=host)
    a.args = ["--peers", b.addr, "--cluster-key-file", key, "--timeout", "5"]
    b.args = ["--peers", a.addr, "--cluster-key-file", key, "--timeout", "5"]
    return [a, b]


def check_cluster(nodes: list[NodeProcess]) -> None:
    """Both nodes vote, each writes and reads the other's write, and every
    node's address is kept and shown as its --listen (brackets and names
    included)."""
    start_voting(nodes)
    for i, node in enumerate(nodes):
        status, body = node.request("PUT", f"/v1/store/w{i}", b"v%d" % i, timeout=15)
        assert status == 200, body
    for node in nodes:
        for i in range(len(nodes)):
            wait_for(f"/w{i} on {node.addr}",
                     lambda: node.request("GET", f"/v1/store/w{i}", timeout=2)[0] == 200)
    status, body = nodes[0].request("GET", "/v1/cluster", timeout=5)
    assert status == 200
    shown = sorted(n["addr"] for n in body["nodes"])
    assert shown == sorted(n.addr for n in nodes), body
    for node in nodes:
        self_id = node.request("GET", "/v1/self", timeout=2)[1]["id"]
        status, body = nodes[0].request("GET", f"/v1/store/ctl/node/{self_id}/addr", timeout=2)
        assert status == 200 and body["value"] == node.addr


def test_ipv6_loopback_cluster(tmp_path) -> None:
    if not ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (cannot bind ::1)")
    nodes = two_node_cluster(tmp_path, "::1")
    assert nodes[0].addr.startswith("[::1]:")
    try:
        check_cluster(nodes)
    finally:
        for node in nodes:
            node.stop()


def test_cluster_of_nodes_named_by_host_name(tmp_path) -> None:
    """--listen localhost:PORT binds 127.0.0.1 and advertises the name;
    peers named localhost:PORT are found through it."""
    nodes = two_node_cluster(tmp_path, "localhost")
    try:
        check_cluster(nodes)
        assert "localhost" in nodes[0].read_log()
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.parametrize("option", ["--peers", "--listen"])
def test_an_unresolvable_name_is_a_start_up_error(tmp_path, option: str) -> None:
    """The .invalid domain never resolves (RFC 6761)."""
    args = [*TWISTD, "-n", "--pidfile=", "doozer", "--web", "false",
            "--insecure-peers", option, "nowhere.invalid:8046"]
    done = subprocess.run(args, cwd=tmp_path, env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"},
                          capture_output=True, timeout=60)
    assert done.returncode != 0
    out = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert f"{option}: host name 'nowhere.invalid' does not resolve" in out, out
