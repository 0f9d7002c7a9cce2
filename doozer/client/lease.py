"""A lease that keeps itself alive (SPEC §9): ``Client.lease(ttl)``.

::

    async with client.lease(10) as lease:
        await client.set("/svc/me", b"addr", lease=lease.id)
        lease.lost.addCallback(lambda why: stop_serving())
        ...                      # the lease is revoked on the way out

The handle renews the lease every ``ttl/3``. It times the lease from the
moment it **sent** the last keepalive answered 200 (the node promises no
expiry before ``ttl`` after that send, G1), so it knows when the lease
*could* have expired: if no renewal sent later was confirmed by then, or a
keepalive answers ``NOENT``, the lease is **lost** — :attr:`Lease.lost`
fires with the reason and renewals stop. A failed keepalive (no quorum, a
node down) is retried at once through the client's failover, then every
``ttl/10``, until the lease is confirmed or lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall

from doozer.errors import DoozerError

if TYPE_CHECKING:  # the client's lease calls make it; typing only
    from doozer.client.lease_calls import LeaseCalls


class Lease:
    """One granted lease and its renewals; made by :meth:`Client.lease`.

    :ivar id: the lease's id (``None`` until granted).
    :ivar lost: fires once with the reason (a string) when the lease can no
        longer be counted on; never fires when the holder ends it.
    :ivar confirmed_until: the client's clock time before which the lease
        is certainly alive (the last 200's send + ttl).
    """

    def __init__(self, client: "LeaseCalls", ttl: int) -> None:
        self._client = client
        self.ttl = ttl
        self.id: Optional[str] = None
        self.lost: Deferred[str] = Deferred()
        self.confirmed_until = 0.0
        self._renew_call: Optional[IDelayedCall] = None
        self._deadline_call: Optional[IDelayedCall] = None
        self._in_flight = False
        self._done = False

    @property
    def is_lost(self) -> bool:
        return self.lost.called

    async def __aenter__(self) -> "Lease":
        clock = self._client.clock
        sent = clock.seconds()
        self.id, _ = await self._client.grant(self.ttl)
        self._confirmed(sent)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._stop()
        if self.id is not None and not self.is_lost:
            try:
                await self._client.revoke(self.id)
            except DoozerError:
                pass  # it expires by itself within ttl

    def _stop(self) -> None:
        self._done = True
        for call in (self._renew_call, self._deadline_call):
            if call is not None and call.active():
                call.cancel()
        self._renew_call = self._deadline_call = None

    def _confirmed(self, sent: float) -> None:
        until = sent + self.ttl
        if until <= self.confirmed_until:
            return
        self.confirmed_until = until
        clock = self._client.clock
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        self._deadline_call = clock.callLater(
            max(0.0, until - clock.seconds()), self._lose,
            f"no renewal confirmed within {self.ttl} s; the lease may have expired")
        self._schedule(sent + self.ttl / 3)

    def _schedule(self, at: float) -> None:
        if self._done:
            return
        clock = self._client.clock
        if self._renew_call is not None and self._renew_call.active():
            self._renew_call.cancel()
        self._renew_call = clock.callLater(max(0.0, at - clock.seconds()), self._renew)

    def _renew(self) -> None:
        self._renew_call = None
        if self._done or self._in_flight or self.id is None:
            return
        self._in_flight = True
        sent = self._client.clock.seconds()
        d = ensureDeferred(self._keepalive())
        d.addCallbacks(lambda _: self._renewed(sent), self._failed)

    async def _keepalive(self) -> None:
        assert self.id is not None
        await self._client.keepalive(self.id)

    def _renewed(self, sent: float) -> None:
        self._in_flight = False
        if not self._done:
            self._confirmed(sent)

    def _failed(self, failure: Any) -> None:
        self._in_flight = False
        error = failure.value
        if self._done:
            return
        if isinstance(error, DoozerError) and error.code == "NOENT":
            self._lose(f"lease {self.id} is gone (expired or revoked)")
            return
        self._schedule(self._client.clock.seconds() + self.ttl / 10)

    def _lose(self, why: str) -> None:
        if self._done:
            return
        self._stop()
        self.lost.callback(why)
