"""An operator's calls on one node: LEAVE (its CAL slot) and BACKUP (its
store at one rev). Both need the read-write secret when the node has
secrets.

A mixin of :class:`~doozer.client.client.Client` (:mod:`doozer.client.calls`).
"""

from __future__ import annotations

import json
from typing import Any

from doozer.client.calls import Calls, deferred
from doozer.client.errors import error_from_response
from doozer.client.failover import Failover

#: Seconds a backup may take to arrive (a store at its quota is large).
BACKUP_TIMEOUT = 600.0


class AdminCalls(Calls):
    """LEAVE and BACKUP of a :class:`~doozer.client.client.Client`."""

    @deferred
    async def leave(self, timeout: float = 30.0) -> dict[str, Any]:
        """LEAVE (``DELETE /v1/self/slot``): the first address's node empties
        its CAL slot and stops voting. Sent to that one node only, never
        failed over: another node must not be made to leave instead."""
        one = Failover((self.current,), self._transport.http, self.clock,
                       secret=self.secret, timeout=self.timeout)
        reply = await one.call("DELETE", "/v1/self/slot", write=True, wait=timeout)
        if reply.status != 200:
            raise error_from_response(reply.status, reply.body, reply.base)
        return dict(json.loads(reply.body))

    @deferred
    async def backup(self, timeout: float = BACKUP_TIMEOUT) -> bytes:
        """BACKUP: one backup of the answering node's store at one rev (SPEC §8).

        Needs the read-write secret when the node has secrets. The bytes are
        as the node sent them: :func:`doozer.store.backup.decode` checks them
        and reads their rev (``doozer backup FILE`` does both).

        :param timeout: seconds the whole backup may take to arrive.
        :raises Busy: every node tried was sending another backup.
        """
        reply = await self._transport.call("GET", "/v1/backup", wait=timeout)
        if reply.status != 200:
            raise error_from_response(reply.status, reply.body, reply.base)
        return reply.body
