"""``/livez`` and ``/readyz`` on real processes (SPEC §11): a healthy
cluster behind secrets, a quorum lost to SIGSTOP and regained, a node that
has found no cluster. (Catching up is timed by the cluster's pace, so it is
tested deterministically in tests/node/test_health.py; the full disk in
tests/process/test_datadir_process.py.)"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from procutil import NodeProcess, free_port
from process.test_cluster_process import Cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Any) -> Any:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def probe(node: NodeProcess, path: str) -> tuple[int, Any]:
    """A probe as a supervisor sends it: no secret, a short timeout."""
    return node.request("GET", path, timeout=3)


def not_ready(node: NodeProcess) -> Any:
    """The node's /readyz answer when it is not 200, else None."""
    answer = probe(node, "/readyz")
    return answer if answer[0] != 200 else None


def test_a_quorum_lost_to_sigstop_makes_the_third_not_ready_but_live(cluster: Any, tmp_path: Any) -> None:
    """Three members with a read-write secret: all live and ready without
    presenting it. SIGSTOP two: the third answers /readyz 503 no_quorum
    (1 of 3 heard) within seconds while /livez stays 200; SIGCONT both and
    it is ready again."""
    secret = tmp_path / "rw.secret"
    secret.write_text("s3cret\n")
    # --timeout 30: the woken members must not remove the third (nor it them).
    a, b, c = nodes = cluster.start(3, "--rw-secret-file", str(secret), "--timeout", "30")
    assert a.request("GET", "/v1/rev")[0] == 401, "the secret is in force"
    for n in nodes:
        wait_for(f"{n.addr} ready", lambda n=n: probe(n, "/readyz") == (200, {"ready": True}))
        assert probe(n, "/livez") == (200, {"live": True})
    b.signal(signal.SIGSTOP)
    c.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, body = wait_for("the third to lose its quorum", lambda: not_ready(a))
        took = time.monotonic() - started
        assert status == 503, body
        assert body["error"] == "NOT_READY" and body["ready"] is False
        assert body["reason"] == "no_quorum", body
        assert (body["voters"], body["connected"], body["quorum"]) == (3, 1, 2)
        assert took < 10, f"noticed after {took:.1f} s (three PING intervals are 3 s)"
        for _ in range(5):
            assert probe(a, "/livez") == (200, {"live": True})
            assert probe(a, "/readyz")[0] == 503
            time.sleep(0.2)
    finally:
        b.signal(signal.SIGCONT)
        c.signal(signal.SIGCONT)
    for n in nodes:
        wait_for(f"{n.addr} ready again", lambda n=n: probe(n, "/readyz") == (200, {"ready": True}))


def test_a_node_that_found_no_cluster_is_live_not_ready(cluster: Any) -> None:
    """A node whose --peers do not answer waits for them (it never starts a
    cluster alone): live, but 503 no_cluster."""
    lonely = cluster.node([free_port()])
    lonely.wait_up()
    status, body = probe(lonely, "/readyz")
    assert (status, body["error"], body["reason"]) == (503, "NOT_READY", "no_cluster"), body
    assert probe(lonely, "/livez") == (200, {"live": True})
