"""Frames and the life of a connection (doozer/server/doozerd/framing.py):
frames together or a byte at a time, malformed and oversized ones closing
the connection, one at the limit accepted, and a disconnect releasing what
it left pending."""

from __future__ import annotations

from doozer.server.doozerd import protocol as native
from nativeutil import MemoryConn, Native, encode, err


def test_many_pipelined_requests_in_one_chunk_and_split_frames(c: MemoryConn) -> None:
    """Frames arriving together, or a byte at a time, are each answered once."""
    data = b"".join(encode(tag=i, verb="SET", path=f"/m/{i}", rev=-1, value=b"v") for i in range(50))
    c.send_raw(data)
    c.settle()
    data = b"".join(encode(tag=100 + i, verb="GET", path=f"/m/{i}") for i in range(50))
    for i in range(len(data)):
        c.send_raw(data[i : i + 1])
    c.settle()
    assert sorted(c.received) == list(range(50)) + list(range(100, 150))
    assert all(c.received[100 + i].value == b"v" for i in range(50))


def test_malformed_frame_closes_the_connection(n: Native) -> None:
    """A frame that is not a Request closes the connection; other connections keep serving."""
    bad, good = n.conn(), n.conn()
    bad.send_raw(b"\x00\x00\x00\x03\xff\xff\xff")
    assert bad.closed
    bad.send(verb="REV")  # ignored once closing
    assert bad.settle() == []
    assert err(good.call("REV")) is None


def test_oversized_length_closes_before_the_body_arrives(n: Native) -> None:
    """A length over max_value + 4 KiB closes the connection at once."""
    c = n.conn()
    c.send_raw((32768 + native.FRAME_SLACK + 1).to_bytes(4, "big"))
    assert c.closed
    c2 = n.conn()
    c2.send_raw(b"\xff\xff\xff\xff")
    assert c2.closed


def test_frame_at_the_limit_is_accepted(c: MemoryConn) -> None:
    """A SET of a max_value body with a long path fits the frame limit."""
    r = c.call("SET", path="/" + "p" * 200, rev=-1, value=b"v" * 32768)
    assert err(r) is None and not c.closed


def test_disconnect_releases_pending_waits_at_once(n: Native) -> None:
    """A client that leaves with WAITs and future reads pending costs the node nothing more."""
    c = n.conn()
    before = n.node.store.watcher_count()
    for i in range(5):
        c.send(verb="WAIT", path=f"/x{i}/**", rev=n.node.store.rev + 1)
    c.send(verb="GET", path="/x", rev=n.node.store.rev + 50)
    c.settle()
    assert n.node.store.watcher_count() == before + 5
    assert len(c.protocol.pending) == 6
    c.disconnect()
    assert n.node.store.watcher_count() == before
    assert c.protocol.pending == {}
    assert n.node.store.waiters._revs == {}
    n.conn().call("SET", path="/x0/y", rev=-1, value=b"")  # nothing answers the gone client
    assert c.transport.value() == b""


def test_disconnect_with_a_write_in_flight(n: Native) -> None:
    """A client that leaves before its write is decided: the write still applies, nothing is logged."""
    c = n.conn()
    c.send(verb="SET", path="/inflight", rev=-1, value=b"v")
    c.disconnect()
    n.clock.advance(0)
    n.clock.advance(0)
    assert n.node.store.get("/inflight").value == b"v"
