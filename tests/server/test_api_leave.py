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
    h = Harness(rw=b"RW", ro=b"RO")
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


def test_a_one_member_hand_off_ends_and_decides_no_more_than_its_window() -> None:
    """The last member hands off without leaving: its window's turns are
    skipped once, and the log does not run on with no-ops (it did, without
    end, while the horizon followed the window)."""
    h = Harness()
    h.settle()
    before = h.node.applied_seqn
    done: list = []
    h.node.leaving.hand_off().addCallback(done.append)
    for _ in range(20):
        h.clock.advance(0.01)
        h.settle()
    assert done and done[0]["left"] is False and done[0]["pending"] == 0
    assert h.node.applied_seqn <= before + 2 * h.node.alpha
