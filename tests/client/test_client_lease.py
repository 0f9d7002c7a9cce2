"""The client's lease verbs and ``Client.lease(ttl)`` (doozer/client/lease.py)
against a node in memory: it renews itself, signals loss when a renewal
cannot be confirmed in time or the lease is gone, and revokes on exit."""

from __future__ import annotations

from typing import Any

import pytest
from clientutil import World, outcome
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater

from doozer.client import BadArg, NoEnt


def test_grant_keepalive_revoke_and_reads() -> None:
    w = World()
    c = w.client()
    lease_id, rev = w.resolve(c.grant(10))
    assert rev == w.node.store.rev and w.node.store.leases.get(lease_id) is not None
    w.resolve(c.set("/svc/a", b"x", lease=lease_id))
    assert w.resolve(c.keepalive(lease_id)) == 10
    assert w.resolve(c.lease_info(lease_id)) == {"id": lease_id, "ttl": 10, "files": ["/svc/a"]}
    assert w.resolve(c.leases()) == [{"id": lease_id, "ttl": 10, "files": ["/svc/a"]}]
    gone = w.resolve(c.revoke(lease_id))
    assert gone == w.node.store.rev
    for call in (c.keepalive, c.revoke, c.lease_info):
        with pytest.raises(NoEnt):
            w.resolve(call(lease_id))
    with pytest.raises(NoEnt) as info:
        w.resolve(c.set("/svc/a", b"x", lease=lease_id))
    assert info.value.extra["lease"] == lease_id
    with pytest.raises(BadArg):
        w.resolve(c.grant(0))


def hold(w: World, ttl: int, body: Any) -> list[Any]:
    """Run ``body(lease)`` inside ``async with client.lease(ttl)``."""
    c = w.client()

    async def run() -> Any:
        async with c.lease(ttl) as lease:
            return await body(lease)

    return outcome(ensureDeferred(run()))


def test_a_held_lease_renews_itself_and_is_revoked_on_exit() -> None:
    w = World()
    seen: dict[str, Any] = {}

    async def body(lease: Any) -> None:
        seen["lease"] = lease
        await deferLater(w.clock, 30, lambda: None)  # three ttls

    out = hold(w, 10, body)
    w.advance(20)
    lease = seen["lease"]
    assert w.node.store.leases.get(lease.id) is not None and not lease.is_lost
    assert lease.confirmed_until > w.clock.seconds()
    w.advance(11)
    assert out == [None]
    assert w.node.store.leases.get(lease.id) is None  # revoked on exit
    assert not lease.lost.called


def test_a_lease_that_cannot_be_renewed_is_lost_after_ttl_from_the_last_confirmed_send() -> None:
    w = World(write_timeout=2.0)
    seen: dict[str, Any] = {}

    async def body(lease: Any) -> None:
        seen["lease"] = lease
        await deferLater(w.clock, 60, lambda: None)

    hold(w, 9, body)
    w.advance(4)  # one renewal at ttl/3 confirmed
    lease = seen["lease"]
    confirmed = lease.confirmed_until
    assert confirmed >= 12
    w.node.sequencer.propose = lambda item, now: None  # no quorum from now on
    reasons = outcome(lease.lost)
    w.advance(confirmed - w.clock.seconds() - 0.5)
    assert reasons == []
    w.advance(1.0)
    assert len(reasons) == 1 and "may have expired" in reasons[0]


def test_a_lease_revoked_behind_its_holders_back_is_lost_at_its_next_renewal() -> None:
    w = World()
    seen: dict[str, Any] = {}

    async def body(lease: Any) -> None:
        seen["lease"] = lease
        await deferLater(w.clock, 60, lambda: None)

    hold(w, 6, body)
    w.settle()
    lease = seen["lease"]
    reasons = outcome(lease.lost)
    w.resolve(w.node.revoke(lease.id))
    w.advance(2.5)
    assert len(reasons) == 1 and "gone" in reasons[0]
