"""``GET /livez`` and ``GET /readyz`` over HTTP (SPEC §11), in memory:
exact bodies and statuses, methods, no secret needed, and where they are
not served (the WebView's port, whose paths are store paths)."""

from __future__ import annotations

import json
import random
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from apiutil import Harness
from doozer.node import build_node
from doozer.node.health import DISK_STALL
from doozer.server.config import Config
from doozer.server.http.api import API
from doozer.server.http.webview import WebView
from doozer.storage.errors import StorageFailed
from doozer.testing import stub_api
from node.test_datadir import HeldRunner, durable_node, settle

_case = SynchronousTestCase()


def fetch(stub: StubTreq, path: str, method: str = "GET", **headers: str) -> tuple[int, Any, bytes]:
    hdrs = {k.replace("_", "-"): [v] for k, v in headers.items()}
    response = _case.successResultOf(stub.request(method, "http://doozer" + path, headers=hdrs))
    return response.code, response.headers, _case.successResultOf(response.content())


def test_a_healthy_node_answers_200_with_exact_bodies() -> None:
    """Live and ready: ``{"live": true}`` and ``{"ready": true}``, JSON,
    with ``X-Doozer-Rev`` like every answer; HEAD answers the same status."""
    h = Harness()
    rev = str(h.node.store.rev)
    for url, body in (("/livez", b'{"live":true}'), ("/readyz", b'{"ready":true}')):
        reply = h.get(url)
        assert (reply.code, reply.body) == (200, body), url
        assert reply.header("Content-Type") == "application/json; charset=utf-8"
        assert reply.header("X-Doozer-Rev") == rev
        head = h.call("HEAD", url)
        assert (head.code, head.body) == (200, b"")


def test_only_get_and_head() -> None:
    """Anything else is 405 METHOD_NOT_ALLOWED, as for every read endpoint."""
    h = Harness()
    for method in ("POST", "PUT", "DELETE"):
        for url in ("/livez", "/readyz"):
            reply = h.call(method, url)
            assert reply.code == 405, (method, url)
            assert reply.json["error"] == "METHOD_NOT_ALLOWED"


def test_no_secret_is_needed_even_when_secrets_are_set() -> None:
    """With rw and ro secrets set, the probes answer without a secret, with
    a wrong one and with either right one; every other endpoint still
    wants one (401)."""
    h = Harness(rw=b"rw-secret", ro=b"ro-secret")
    assert h.get("/v1/rev").code == 401
    assert h.get("/nope").code == 401
    for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer ro-secret"},
                 {"Authorization": "Bearer rw-secret"}):
        assert h.get("/livez", **auth).json == {"live": True}, auth
        assert h.get("/readyz", **auth).json == {"ready": True}, auth
    # a wrong method is still 405, not 401: the secret is never asked for
    assert h.call("POST", "/readyz").code == 405


def test_a_node_in_no_cluster_is_live_and_not_ready() -> None:
    """503 NOT_READY with ``ready: false`` and the reason, in SPEC §3's
    error shape; /livez stays 200."""
    clock = Clock()
    node = build_node(Config(pulse=0), clock, "LONELY", rng=random.Random(0))
    stub = stub_api(node, rw=b"s")
    code, headers, body = fetch(stub, "/readyz")
    assert code == 503
    assert json.loads(body) == {
        "error": "NOT_READY",
        "detail": "the node is in no cluster yet: it is looking for its peers or copying the "
        "cluster's state",
        "ready": False,
        "reason": "no_cluster",
    }
    assert headers.getRawHeaders("X-Doozer-Rev") == ["0"]
    assert fetch(stub, "/livez")[:1] == (200,)


def test_catching_up_names_how_far_behind() -> None:
    """The figures behind a reason are fields of the body."""
    h = Harness(alpha=50)
    seq = h.node.sequencer
    assert seq is not None
    seq.peer_decided["PEER"] = h.node.applied_seqn + 120
    reply = h.get("/readyz")
    assert reply.code == 503
    body = reply.json
    assert (body["error"], body["ready"], body["reason"]) == ("NOT_READY", False, "catching_up")
    assert (body["behind"], body["window"]) == (120, 50)
    assert h.get("/livez").code == 200


def test_a_failed_node_is_neither_live_nor_ready() -> None:
    """After a storage failure (the node exits at once in a real process):
    503 NOT_LIVE and 503 NOT_READY, both naming the failure."""
    h = Harness()
    # what NodeStorage.storage_failed does (this node keeps no data dir)
    h.node._fail(str(StorageFailed("/d/log-00000001", OSError(28, "No space left on device"))))
    live, ready = h.get("/livez"), h.get("/readyz")
    assert (live.code, ready.code) == (503, 503)
    assert live.json["error"] == "NOT_LIVE" and live.json["live"] is False
    assert ready.json["error"] == "NOT_READY" and ready.json["ready"] is False
    for body in (live.json, ready.json):
        assert body["reason"] == "failed"
        assert "No space left on device" in body["detail"]
        assert set(body) == {"error", "detail", "live" if body["error"] == "NOT_LIVE" else "ready",
                             "reason"}


def test_a_stalled_disk_is_not_live_over_http(tmp_path: Any) -> None:
    """A data dir write held past DISK_STALL: /livez 503 disk_stalled with
    the seconds; 200 again once the disk answers."""
    clock, runner = Clock(), HeldRunner()
    node = durable_node(str(tmp_path), clock, runner)
    settle(clock, runner)
    stub = stub_api(node)
    node.set("/x", b"1").addErrback(lambda f: None)
    clock.advance(0)
    clock.advance(0)
    clock.advance(DISK_STALL + 2)
    code, _, body = fetch(stub, "/livez")
    assert code == 503
    assert json.loads(body) == {
        "error": "NOT_LIVE",
        "detail": f"the data dir's disk has not finished a write for {DISK_STALL + 2:g} s "
        f"(more than {DISK_STALL:g} s): it does not answer",
        "live": False,
        "reason": "disk_stalled",
        "stalled_seconds": DISK_STALL + 2,
    }
    assert json.loads(fetch(stub, "/readyz")[2])["reason"] == "disk_stalled"
    settle(clock, runner)
    assert fetch(stub, "/livez")[0] == 200


def test_the_webview_port_does_not_serve_the_probes() -> None:
    """On the WebView's port every path outside /v1 is the page of a store
    path (SPEC §6), so /livez there is the page, not a probe: probes go to
    the client port."""
    h = Harness()
    read_api = API(h.node, readonly=True)
    stub = StubTreq(WebView(read_api.resource()).resource())
    code, headers, body = fetch(stub, "/livez")
    assert code == 200
    assert headers.getRawHeaders("Content-Type")[0].startswith("text/html")
