"""The long-poll watch of SPEC §3, in memory."""

from __future__ import annotations

import pytest

from apiutil import Harness


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_watch_returns_past_changes_at_once(h: Harness) -> None:
    """Changes already applied at or after rev come back immediately, oldest first."""
    a = h.put("/w/a", b"1").json["rev"]
    b = h.put("/w/b", b"2").json["rev"]
    reply = h.get(f"/v1/watch?glob=/w/*&rev={a}")
    assert reply.json == {
        "events": [
            {"rev": a, "path": "/w/a", "op": "set", "value": "1"},
            {"rev": b, "path": "/w/b", "op": "set", "value": "2"},
        ],
        "next": b + 1,
    }


def test_watch_waits_for_the_next_change(h: Harness) -> None:
    """With nothing yet, the request is held until a matching change happens."""
    out = h.start("GET", "/v1/watch?glob=/w/**")
    assert out == []
    h.put("/other", b"x")
    assert out == []
    rev = h.put("/w/deep/file", b"v").json["rev"]
    h.settle()
    assert out[0].json == {
        "events": [{"rev": rev, "path": "/w/deep/file", "op": "set", "value": "v"}],
        "next": rev + 1,
    }


def test_watch_reports_deletes_without_value(h: Harness) -> None:
    """A del event has a null value."""
    h.put("/d", b"x")
    rev = h.call("DELETE", "/v1/store/d").json["rev"]
    reply = h.get(f"/v1/watch?glob=/d&rev={rev}")
    assert reply.json["events"] == [{"rev": rev, "path": "/d", "op": "del", "value": None}]


def test_watch_limit(h: Harness) -> None:
    """limit caps the events; next resumes right after the last one."""
    first = h.put("/l", b"1").json["rev"]
    h.put("/l", b"2")
    reply = h.get(f"/v1/watch?glob=/l&rev={first}&limit=1")
    assert len(reply.json["events"]) == 1
    assert reply.json["next"] == first + 1


def test_watch_timeout_returns_empty_with_next(h: Harness) -> None:
    """After timeout seconds with no change: no events, next = max(rev, current+1)."""
    current = h.get("/v1/rev").json["rev"]
    out = h.start("GET", "/v1/watch?glob=/none&timeout=5")
    h.clock.advance(5.1)
    h.settle()
    assert out[0].json == {"events": [], "next": current + 1}
    far = current + 100
    out = h.start("GET", f"/v1/watch?glob=/none&timeout=1&rev={far}")
    h.clock.advance(1.1)
    h.settle()
    assert out[0].json == {"events": [], "next": far}


def test_watch_skips_nops_and_failed_writes(h: Harness) -> None:
    """No-ops and failed writes take revs but are never events."""
    start = h.get("/v1/rev").json["rev"] + 1
    h.call("POST", "/v1/nop")
    h.put("/n", b"1", rev=0)
    h.put("/n", b"2", rev=0)  # fails
    reply = h.get(f"/v1/watch?glob=/**&rev={start}")
    assert [e["path"] for e in reply.json["events"]] == ["/n"]


def test_watch_too_late() -> None:
    """A rev older than the history is 410 TOO_LATE with oldest."""
    h = Harness(hist=3)
    for i in range(20):
        h.put("/x", str(i).encode())
    reply = h.get("/v1/watch?glob=/**&rev=1")
    assert (reply.code, reply.json["error"]) == (410, "TOO_LATE")
    assert reply.json["oldest"] > 1


@pytest.mark.parametrize(
    "query, code",
    [
        ("", "MISSING_ARG"),
        ("glob=a", "BAD_GLOB"),
        ("glob=/a/", "BAD_GLOB"),
        ("glob=/**&rev=0", "BAD_ARG"),
        ("glob=/**&limit=0", "BAD_ARG"),
        ("glob=/**&timeout=0", "BAD_ARG"),
        ("glob=/**&timeout=301", "BAD_ARG"),
        ("glob=/**&timeout=nan", "BAD_ARG"),
    ],
)
def test_watch_arguments_are_checked(h: Harness, query: str, code: str) -> None:
    """Every malformed watch argument gets its error code."""
    assert h.get("/v1/watch?" + query).json["error"] == code


def test_disconnected_watcher_is_released(h: Harness) -> None:
    """A client that goes away while waiting leaves no waiter behind."""
    d = h.stub.get("http://doozer/v1/watch?glob=/gone/**&timeout=300")
    d.addErrback(lambda f: f.trap(Exception))  # the client side sees its own cancel
    h.settle()
    assert h.node.store.watcher_count() == 1
    d.cancel()
    h.settle()
    assert h.node.store.watcher_count() == 0


def test_many_watches_one_write_wakes_only_the_matching() -> None:
    """2,000 held watches: one write answers exactly the ones whose glob matches."""
    h = Harness()
    replies = {}
    for i in range(2000):
        glob = f"/svc/{i % 100}/**" if i % 2 else f"/other/{i}"
        replies[i] = h.start("GET", f"/v1/watch?glob={glob}&timeout=300", settle=False)
    h.settle()
    assert h.node.store.watcher_count() == 2000
    h.put("/svc/7/leader", b"me")
    h.settle()
    answered = {i for i, out in replies.items() if out}
    assert answered == {i for i in range(2000) if i % 2 and i % 100 == 7}
    assert h.node.store.watcher_count() == 2000 - len(answered)
    for i in answered:
        assert replies[i][0].json["events"][0]["path"] == "/svc/7/leader"


def test_watches_woken_together_each_get_their_own_answer() -> None:
    """Watches woken by one write share a rendered answer only when they asked
    the same; one from an earlier rev, or with another glob, gets its own,
    and the next write's answer is not the last one's."""
    h = Harness()
    first = h.put("/k/a", b"1").json["rev"]
    rev = first + 1
    same = [h.start("GET", f"/v1/watch?glob=/k/**&rev={rev}&timeout=300", settle=False)
            for _ in range(3)]
    earlier = h.start("GET", f"/v1/watch?glob=/k/**&rev={first}&timeout=300", settle=False)
    h.settle()
    assert [len(out) for out in same] == [0, 0, 0] and len(earlier) == 1  # /k/a answers it
    other = h.start("GET", f"/v1/watch?glob=/k/b&rev={rev}&timeout=300")
    again = h.start("GET", f"/v1/watch?glob=/k/**&rev={rev + 1}&timeout=300")
    assert h.put("/k/b", b"2").json["rev"] == rev
    h.settle()
    event = {"rev": rev, "path": "/k/b", "op": "set", "value": "2"}
    for out in [*same, other]:
        assert out[0].json == {"events": [event], "next": rev + 1}
    assert earlier[0].json["events"][0]["path"] == "/k/a"
    h.put("/k/c", b"3")
    h.settle()
    assert again[0].json["events"] == [{"rev": rev + 1, "path": "/k/c", "op": "set", "value": "3"}]
