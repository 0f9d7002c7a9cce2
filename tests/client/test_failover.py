"""One request across a cluster's addresses (doozer/client/failover.py), in
memory: which answers fail over, timeouts, and when a write is indeterminate."""

from __future__ import annotations

from typing import Any

import pytest
from clientutil import World, outcome
from twisted.python.failure import Failure

from doozer.client import Dir, NoEnt, ReadOnly, Timeout, Unavailable, Unreachable


def test_failover_skips_a_dead_first_address_and_sticks_to_the_live_one() -> None:
    """With the first address refusing connections, calls go to the second, which is then tried first."""
    w = World("b:2")
    c = w.client("a:1", "b:2")
    assert w.resolve(c.set("/k", b"v")) > 0
    assert c.current == "http://b:2"
    w.net.calls.clear()
    w.resolve(c.get("/k"))
    assert w.net.calls == [("GET", "b:2")]


def test_a_4xx_answer_never_fails_over() -> None:
    """A NOENT from the first address is raised without asking the second."""
    w = World("a:1", "b:2")
    c = w.client("a:1", "b:2")
    with pytest.raises(NoEnt):
        w.resolve(c.get("/missing"))
    assert [netloc for _, netloc in w.net.calls] == ["a:1"]


def test_a_503_fails_over_to_the_next_address() -> None:
    """A node answering 503 READONLY is skipped for the next address."""
    from treq.testing import StringStubbingResource, StubTreq

    def readonly(*_: Any) -> tuple[int, dict[bytes, bytes], bytes]:
        return 503, {b"Content-Type": b"application/json"}, b'{"error":"READONLY","detail":"not a member"}'

    w = World("b:2")
    w.net.serve("a:1", StubTreq(StringStubbingResource(readonly)))
    c = w.client("a:1", "b:2")
    assert w.resolve(c.set("/k", b"v")) > 0
    assert [netloc for _, netloc in w.net.calls] == ["a:1", "b:2"]


def test_only_503s_raise_the_last_503_error() -> None:
    """When every address answers READONLY, ReadOnly is raised (not Unreachable)."""
    from treq.testing import StringStubbingResource, StubTreq

    def readonly(*_: Any) -> tuple[int, dict[bytes, bytes], bytes]:
        return 503, {}, b'{"error":"READONLY","detail":"not a member"}'

    w = World("b:2")
    w.net.serve("a:1", StubTreq(StringStubbingResource(readonly)))
    c = w.client("a:1")
    with pytest.raises(ReadOnly):
        w.resolve(c.set("/k", b"v"))


def test_no_live_address_is_unreachable_and_a_refused_write_is_determinate() -> None:
    """All addresses refusing: Unreachable (an Unavailable), not indeterminate."""
    w = World("b:2")
    c = w.client("a:1", "c:3")
    with pytest.raises(Unreachable) as info:
        w.resolve(c.set("/k", b"v"))
    assert isinstance(info.value, Unavailable)
    assert not info.value.indeterminate
    assert "a:1" in info.value.detail and "c:3" in info.value.detail


def test_a_hung_address_times_out_and_fails_over() -> None:
    """An address that never answers is abandoned after the timeout for the next one."""
    w = World("b:2")
    w.net.hang("a:1")
    c = w.client("a:1", "b:2", timeout=3)
    out = outcome(c.get("/"))
    w.advance(2.5)
    assert out == []
    w.advance(1)
    assert isinstance(out[0], Dir)


def test_a_write_that_timed_out_everywhere_is_indeterminate() -> None:
    """A write sent to a node that never answered may still commit: indeterminate."""
    w = World("b:2")
    w.net.hang("a:1")
    c = w.client("a:1", timeout=2)
    out = outcome(c.set("/k", b"v"))
    w.advance(3)
    assert isinstance(out[0], Failure) and out[0].check(Unreachable)
    assert out[0].value.indeterminate


def test_a_read_at_a_future_rev_that_never_comes_is_timeout() -> None:
    """get at a rev the node never reaches raises Timeout (the server's 504)."""
    w = World()
    c = w.client(timeout=2)
    out = outcome(c.get("/", w.node.store.rev + 100))
    w.advance(3)
    assert isinstance(out[0], Failure) and out[0].check(Timeout)
