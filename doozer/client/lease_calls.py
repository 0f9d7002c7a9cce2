"""The client's lease calls (SPEC §9): GRANT, KEEPALIVE, REVOKE, a lease's
files, every lease, and :meth:`~LeaseCalls.lease`, the lease that renews
itself (:mod:`doozer.client.lease`).

A mixin of :class:`~doozer.client.client.Client` (:mod:`doozer.client.calls`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from doozer.client.calls import Calls, deferred
from doozer.client.lease import Lease


class LeaseCalls(Calls):
    """The lease calls of a :class:`~doozer.client.client.Client`."""

    def lease(self, ttl: int) -> Lease:
        """A lease of ``ttl`` seconds that renews itself, as an async
        context manager (:mod:`doozer.client.lease`)."""
        return Lease(self, ttl)

    @deferred
    async def grant(self, ttl: int) -> tuple[str, int]:
        """GRANT a lease; returns ``(id, rev)``. Renew it yourself with
        :meth:`keepalive`, or use :meth:`lease`."""
        obj = await self._json("POST", "/v1/lease", (), json.dumps({"ttl": ttl}).encode(),
                               write=True)
        return str(obj["id"]), int(obj["rev"])

    @deferred
    async def keepalive(self, lease_id: str) -> int:
        """Renew a lease; returns its ttl once renewed (no rev is taken).

        :raises NoEnt: the lease is gone.
        :raises Unavailable: the renewal was not confirmed; count on the
            lease only until ``ttl`` after the send of the last that was.
        """
        obj = await self._json("POST", f"/v1/lease/{quote(lease_id, safe='')}/keepalive",
                               write=True)
        return int(obj["ttl"])

    @deferred
    async def revoke(self, lease_id: str) -> int:
        """End a lease and delete its files; returns the rev they went at."""
        obj = await self._json("DELETE", f"/v1/lease/{quote(lease_id, safe='')}", write=True)
        return int(obj["rev"])

    @deferred
    async def lease_info(self, lease_id: str) -> dict[str, Any]:
        """``{"id", "ttl", "files"}`` of a lease."""
        return await self._json("GET", f"/v1/lease/{quote(lease_id, safe='')}")

    @deferred
    async def leases(self) -> list[dict[str, Any]]:
        """Every lease: ``[{"id", "ttl", "files"}, ...]``."""
        return list((await self._json("GET", "/v1/leases"))["leases"])
