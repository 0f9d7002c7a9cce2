"""Watches and ``Client.wait`` (doozer/client/watch.py) in memory: every
change once and in order, resumed across dead, hung and replaced addresses."""

from __future__ import annotations

from typing import Any

from clientutil import World, outcome
from twisted.internet.defer import ensureDeferred
from twisted.python.failure import Failure

from doozer.client import Event, Timeout, TooLate, Unreachable


def _collect(w: World, watch: Any, into: list) -> Any:
    async def loop() -> None:
        async for event in watch:
            into.append(event)

    return ensureDeferred(loop())


def test_watch_yields_every_matching_change_in_order() -> None:
    """A watch from now yields each later matching set and del once, in rev order."""
    w = World()
    c = w.client()
    seen: list[Event] = []
    done = outcome(_collect(w, c.watch("/w/**"), seen))
    w.settle()
    r1 = w.write("/w/a", b"1")
    w.write("/other", b"x")
    r2 = w.write("/w/b/c", b"2")
    r3 = w.resolve(w.node.delete("/w/a", -1))
    w.settle()
    assert seen == [
        Event(r1, "/w/a", "set", b"1"),
        Event(r2, "/w/b/c", "set", b"2"),
        Event(r3, "/w/a", "del", None),
    ]
    assert done == []


def test_watch_from_a_past_rev_replays_history() -> None:
    """watch(glob, rev) starts at rev, so earlier changes are delivered first."""
    w = World()
    c = w.client()
    r1 = w.write("/h", b"1")
    r2 = w.write("/h", b"2")
    watch = c.watch("/h", r1)
    assert w.resolve(watch.next()).rev == r1
    assert w.resolve(watch.next()).rev == r2
    assert watch.next_rev == r2 + 1


def test_closing_a_watch_ends_async_iteration() -> None:
    """close() cancels the long-poll and ends the async for loop."""
    w = World()
    c = w.client()
    watch = c.watch("/**")
    done = outcome(_collect(w, watch, []))
    w.settle()
    watch.close()
    w.settle()
    assert done == [None]


def test_an_idle_watch_keeps_polling_past_the_poll_timeout() -> None:
    """A long-poll that times out empty is reissued and later changes still arrive."""
    w = World()
    c = w.client()
    seen: list[Event] = []
    outcome(_collect(w, c.watch("/slow", poll_timeout=5), seen))
    w.advance(12)
    rev = w.write("/slow", b"late")
    w.settle()
    assert [e.rev for e in seen] == [rev]


def test_watch_survives_its_node_dying_and_resumes_on_the_other_address() -> None:
    """When the watched address dies mid-poll, the watch resumes on the next one from next: nothing lost or repeated."""
    w = World("a:1", "b:2")
    c = w.client("a:1", "b:2")
    seen: list[Event] = []
    done = outcome(_collect(w, c.watch("/job/*"), seen))
    w.settle()
    r1 = w.write("/job/1", b"one")
    w.settle()
    w.net.kill("a:1")
    r2 = w.write("/job/2", b"two")
    w.settle()
    r3 = w.write("/job/3", b"three")
    w.settle()
    assert [e.rev for e in seen] == [r1, r2, r3]
    assert done == []
    assert c.current == "http://b:2"


def test_watch_resumes_on_a_second_address_that_comes_up_after_the_first_died() -> None:
    """Node at A dies; the same store comes back behind B later: the watch resumes there from next."""
    from doozer.testing import stub_api

    w = World("a:1")
    c = w.client("a:1", "b:2", reconnect_timeout=30)
    seen: list[Event] = []
    done = outcome(_collect(w, c.watch("/job/*"), seen))
    w.settle()
    r1 = w.write("/job/1", b"one")
    w.net.kill("a:1")
    r2 = w.write("/job/2", b"two")
    w.advance(5)
    w.net.serve("b:2", stub_api(w.node))
    w.advance(3)
    r3 = w.write("/job/3", b"three")
    w.settle()
    assert [e.rev for e in seen] == [r1, r2, r3]
    assert done == [] and c.current == "http://b:2"


def test_watch_retries_while_no_address_answers_then_resumes() -> None:
    """With every address down for a while, the watch keeps retrying and then resumes from next."""
    w = World("a:1")
    stub = w.net.routes["a:1"]
    c = w.client("a:1", reconnect_timeout=30)
    seen: list[Event] = []
    done = outcome(_collect(w, c.watch("/r"), seen))
    w.settle()
    w.net.kill("a:1")
    r1 = w.write("/r", b"while down")
    w.advance(10)
    w.net.serve("a:1", stub)
    w.advance(3)
    r2 = w.write("/r", b"after")
    w.settle()
    assert [e.rev for e in seen] == [r1, r2]
    assert done == []


def test_watch_gives_up_after_reconnect_timeout() -> None:
    """A watch whose addresses stay down past reconnect_timeout raises Unreachable."""
    w = World("a:1")
    c = w.client("a:1", reconnect_timeout=5)
    done = outcome(_collect(w, c.watch("/r"), []))
    w.settle()
    w.net.kill("a:1")
    w.advance(8)
    assert isinstance(done[0], Failure) and done[0].check(Unreachable)


def test_watch_raises_too_late_rather_than_skipping_events() -> None:
    """If history moved past next while disconnected, the watch raises TooLate."""
    w = World("a:1", hist=5)
    stub = w.net.routes["a:1"]
    c = w.client("a:1")
    seen: list[Event] = []
    done = outcome(_collect(w, c.watch("/t"), seen))
    w.settle()
    w.net.kill("a:1")
    for i in range(30):
        w.write("/t", str(i).encode())
    w.net.serve("a:1", stub)
    w.advance(3)
    assert seen == []
    assert isinstance(done[0], Failure) and done[0].check(TooLate)


def test_wait_returns_the_first_change_at_or_after_rev() -> None:
    """wait(glob, rev) returns the first matching event with rev >= rev."""
    w = World()
    c = w.client()
    r1 = w.write("/x", b"1")
    w.write("/x", b"2")
    assert w.resolve(c.wait("/x", r1)) == Event(r1, "/x", "set", b"1")


def test_wait_with_a_timeout_raises_timeout_when_nothing_changes() -> None:
    """wait(..., timeout=S) raises Timeout after S seconds of no change."""
    w = World()
    c = w.client()
    out = outcome(c.wait("/quiet", timeout=4))
    w.advance(3)
    assert out == []
    w.advance(2)
    assert isinstance(out[0], Failure) and out[0].check(Timeout)
