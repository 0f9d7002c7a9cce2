"""An operator's calls on one node (doozer/client/admin.py): ``Client.leave``
and ``doozer leave``, sent to the first address only; ``Client.backup``,
which needs the read-write secret and moves on from a node busy with another."""

from __future__ import annotations

import pytest

from clientutil import World
from doozer.client import Busy, Forbidden
from doozer.client.errors import ClientError, Unreachable


def test_leave_is_never_failed_over_to_another_node() -> None:
    """The first address is down: the leave fails there and is not sent to
    the second (which would make another node leave instead)."""
    world = World("a:1", "b:1")
    world.net.kill("a:1")
    with pytest.raises(Unreachable):
        world.resolve(world.client("a:1", "b:1").leave())
    assert ("DELETE", "b:1") not in world.net.calls
    assert world.node.member and not world.node.leaving.left


def test_a_refusal_names_its_code() -> None:
    world = World("a:1")
    with pytest.raises(ClientError) as e:
        world.resolve(world.client().leave())
    assert "NO_QUORUM" in str(e.value)


def test_backup_returns_the_nodes_backup_and_needs_the_read_write_secret() -> None:
    from doozer.store.backup import decode

    w = World(stub_options={"rw": b"rw-secret", "ro": b"ro-secret"})
    c = w.client(secret="rw-secret")
    w.resolve(c.set("/a", b"\xff"))
    got = decode(w.resolve(c.backup()))
    assert got.rev == w.node.store.rev
    assert got.store.walk("/**") == w.node.store.walk("/**")
    with pytest.raises(Forbidden):
        w.resolve(w.client(secret="ro-secret").backup())


def test_a_node_busy_with_another_backup_sends_the_client_to_the_next() -> None:
    from treq.testing import StubTreq

    from doozer.server.http.api import API
    from doozer.store.backup import decode

    w = World("a:1")
    busy = API(w.node)
    busy.backups.sending = object()  # as if a slow client were taking one
    w.net.serve("a:1", StubTreq(busy.resource()))
    w.net.serve("b:1", StubTreq(API(w.node).resource()))
    c = w.client("a:1", "b:1")
    assert decode(w.resolve(c.backup())).rev == w.node.store.rev
    assert c.current == "http://b:1"
    with pytest.raises(Busy):
        w.resolve(w.client("a:1").backup())

