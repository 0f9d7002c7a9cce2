"""``DELETE /v1/self/slot`` (SPEC §11) through the HTTP API: its method,
secrets and refusal. A leave that succeeds needs peers: tests/node/test_leaving.py
(simulated) and tests/process/test_leave_process.py (processes)."""

from __future__ import annotations

from apiutil import Harness


def test_the_only_member_is_refused_with_no_quorum() -> None:
    h = Harness()
    r = h.call("DELETE", "/v1/self/slot")
    assert r.code == 409
    assert r.json["error"] == "NO_QUORUM"
    assert r.json["members_left"] == 0
    assert h.node.member and not h.node.leaving.left


def test_only_delete() -> None:
    h = Harness()
    for method in ("GET", "POST", "PUT"):
        assert h.call(method, "/v1/self/slot").code == 405
    assert h.get("/v1/self").code == 200  # /v1/self itself is unchanged


def test_needs_the_read_write_secret() -> None:
    h = Harness(rw="RW", ro="RO")
    assert h.call("DELETE", "/v1/self/slot").code == 401
    r = h.call("DELETE", "/v1/self/slot", authorization="Bearer RO")
    assert r.code == 403 and r.json["error"] == "FORBIDDEN"
    r = h.call("DELETE", "/v1/self/slot", authorization="Bearer RW")
    assert r.code == 409 and r.json["error"] == "NO_QUORUM"


def test_the_webview_address_does_not_serve_it() -> None:
    h = Harness(readonly=True)
    assert h.call("DELETE", "/v1/self/slot").code == 405


def test_refused_while_shutting_down() -> None:
    h = Harness()
    h.node.leaving.hand_off()
    r = h.call("DELETE", "/v1/self/slot")
    assert r.code == 503 and r.json["error"] == "READONLY"
