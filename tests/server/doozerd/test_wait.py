"""doozerd's WAIT (doozer/server/doozerd/wait.py): the first matching change
at or after a rev, however long it takes, without holding up the requests
pipelined behind it."""

from __future__ import annotations

from doozer.server.doozerd import wait as nativewait
from nativeutil import DEL, SET, MemoryConn, Native, err


def test_wait_answers_an_existing_change_at_once(c: MemoryConn) -> None:
    """WAIT from an old rev answers the first matching change at or after it."""
    first = c.call("SET", path="/e/a", rev=-1, value=b"1").rev
    c.call("SET", path="/e/b", rev=-1, value=b"2")
    r = c.call("WAIT", path="/e/*", rev=first)
    assert (r.path, r.rev, r.value, r.flags) == ("/e/a", first, b"1", SET)
    r = c.call("WAIT", path="/e/*", rev=first + 1)
    assert (r.path, r.value) == ("/e/b", b"2")


def test_wait_holds_until_its_change_and_reports_del(n: Native, c: MemoryConn) -> None:
    """A WAIT for the future answers only when a matching change happens; a delete has flags 8."""
    c.call("SET", path="/q/f", rev=-1, value=b"x")
    tag = c.send(verb="WAIT", path="/q/**", rev=n.node.store.rev + 1)
    c.call("SET", path="/elsewhere", rev=-1, value=b"y")
    assert tag not in c.received
    n.clock.advance(nativewait.WAIT_SLICE * 3)  # never times out
    c.settle()
    assert tag not in c.received
    delete_tag = c.send(verb="DEL", path="/q/f", rev=-1)
    c.settle()
    r = c.received[tag]
    assert (r.path, r.flags, r.HasField("value")) == ("/q/f", DEL, False)
    assert r.rev == n.node.store.rev and err(c.received[delete_tag]) is None


def test_wait_skips_nops(n: Native, c: MemoryConn) -> None:
    """No-ops are never WAIT answers: a WAIT on /** from a NOP's rev answers the next set."""
    nop_rev = n.node.store.rev + 1
    c.call("NOP")
    tag = c.send(verb="WAIT", path="/**", rev=nop_rev)
    assert c.settle() == []
    set_rev = c.call("SET", path="/after", rev=-1, value=b"").rev
    assert c.received[tag].rev == set_rev


def test_wait_errors(c: MemoryConn) -> None:
    """WAIT without rev or glob is MISSING_ARG; a bad glob BAD_PATH."""
    assert err(c.call("WAIT", path="/**")) == "MISSING_ARG"
    assert err(c.call("WAIT", rev=1)) == "MISSING_ARG"
    assert err(c.call("WAIT", path="/a/", rev=1)) == "BAD_PATH"


def test_wait_older_than_history_is_too_late() -> None:
    """WAIT from a rev older than the kept history is TOO_LATE."""
    n = Native(hist=4)
    c = n.conn()
    for i in range(12):
        c.call("SET", path="/h", rev=-1, value=b"")
    assert err(c.call("WAIT", path="/**", rev=1)) == "TOO_LATE"


def test_wait_does_not_hold_up_other_requests(n: Native, c: MemoryConn) -> None:
    """Pipelined behind a pending WAIT, other requests are answered, each with its tag."""
    wait_tag = c.send(verb="WAIT", path="/later", rev=n.node.store.rev + 1)
    tags = [c.send(verb="REV"), c.send(verb="GET", path="/x"), c.send(verb="SET", path="/y", rev=-1)]
    c.settle()
    assert set(c.received) == set(tags)
    c.call("SET", path="/later", rev=-1, value=b"ok")
    assert c.received[wait_tag].value == b"ok"
