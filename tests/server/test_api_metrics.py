"""``GET /metrics`` over HTTP (SPEC §11), in memory: Prometheus's text
format and content type, the read secret when secrets are set, methods,
and not on the WebView's port."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq

from apiutil import Harness
from doozer.node.metrics import NodeMetrics
from doozer.server.http.api import API
from doozer.server.http.webview import WebView


def _samples(body: bytes) -> dict[str, float]:
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }


def test_a_scrape_is_prometheus_text_and_moves_with_a_write() -> None:
    """200 in the text format's content type; it parses; a PUT through the
    API is one more committed write at the next scrape."""
    h = Harness()
    first = h.get("/metrics")
    assert first.code == 200
    assert first.header("Content-Type") == CONTENT_TYPE_LATEST
    assert first.header("X-Doozer-Rev") == str(h.node.store.rev)
    committed = "doozer_writes_committed_total[]"
    before = _samples(first.body)[committed]
    assert h.put("/a", b"1").code == 200
    assert _samples(h.get("/metrics").body)[committed] == before + 1


def test_the_read_secret_is_needed_when_secrets_are_set() -> None:
    """401 without a secret or with a wrong one; either right one reads."""
    h = Harness(rw=b"rw-secret", ro=b"ro-secret")
    assert h.get("/metrics").code == 401
    assert h.get("/metrics", Authorization="Bearer wrong").code == 401
    for secret in ("ro-secret", "rw-secret"):
        reply = h.get("/metrics", Authorization=f"Bearer {secret}")
        assert reply.code == 200 and b"doozer_store_rev" in reply.body, secret


def test_only_get_and_head() -> None:
    h = Harness()
    head = h.call("HEAD", "/metrics")
    assert (head.code, head.body) == (200, b"")
    for method in ("POST", "PUT", "DELETE"):
        reply = h.call(method, "/metrics")
        assert reply.code == 405 and reply.json["error"] == "METHOD_NOT_ALLOWED", method


def test_the_api_serves_the_metrics_it_is_given() -> None:
    """The service hands the API the node's one NodeMetrics (with its
    transport and limits); the API serves that one, not one of its own."""
    h = Harness()
    given = NodeMetrics(h.node, lambda: {"sent": 42, "received": 0})
    api = API(h.node, metrics=given)
    stub = StubTreq(api.resource())
    h.stub = stub
    body = h.get("/metrics").body
    assert _samples(body)["doozer_peer_datagrams_sent_total[]"] == 42
    assert api.metrics is given


def test_the_webview_port_does_not_serve_metrics() -> None:
    """On the WebView's port /metrics is a store path's page, as /livez is."""
    h = Harness()
    h.stub = StubTreq(WebView(API(h.node, readonly=True).resource()).resource())
    reply = h.get("/metrics")
    assert reply.code == 200 and reply.header("Content-Type").startswith("text/html")
    assert b"doozer_" not in reply.body
    h.stub = StubTreq(API(h.node, readonly=True).resource())
    assert h.get("/metrics").json["error"] == "NOT_FOUND"
