"""The verbs clients call on a node, each handed in one line to the part
of the node that does it: writes to :class:`~doozer.node.writes.Writes`,
leases to :mod:`doozer.node.leases`, reads to :mod:`doozer.node.reads`.

Both front ends (HTTP in :mod:`doozer.server.http.api`, doozerd's protocol in
:mod:`doozer.server.doozerd.protocol`) and the tests call these on the
:class:`~doozer.node.node.Node`, which takes them from this mixin; the rest
of the node (its life cycle, who may write, the consensus turns) stays in
:mod:`doozer.node.node`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable, Iterable, Optional, cast

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from doozer.node import leases as node_leases
from doozer.node import reads
from doozer.store import Event, Store, mutation

if TYPE_CHECKING:
    from doozer.node.node import Node
    from doozer.node.writes import Writes


class ClientVerbs:
    """Writes, leases and reads, as clients ask for them (see the module docstring)."""

    # what the node holds (doozer/node/node.py sets them)
    writes: "Writes"
    store: Store
    clock: IReactorTime

    def _node(self) -> "Node":
        return cast("Node", self)  # only ever mixed into Node

    # ------------------------------------------------------------------
    # writes (the verbs themselves: doozer/node/writes.py)

    def set(
        self,
        path: str,
        value: bytes,
        rev: int = mutation.CLOBBER,
        client: Optional[Hashable] = None,
        lease: str = "",
    ) -> "defer.Deferred[int]":
        """Write ``value`` to ``path`` (:meth:`Writes.set <doozer.node.writes.Writes.set>`)."""
        return self.writes.set(path, value, rev, client, lease)

    def delete(
        self, path: str, rev: int = mutation.CLOBBER, client: Optional[Hashable] = None
    ) -> "defer.Deferred[int]":
        """Delete the file ``path`` (:meth:`Writes.delete <doozer.node.writes.Writes.delete>`)."""
        return self.writes.delete(path, rev, client)

    def txn(
        self,
        compare: Iterable[tuple[str, int]],
        ops: Iterable[mutation.Op],
        client: Optional[Hashable] = None,
    ) -> "defer.Deferred[int]":
        """A transaction, all or nothing (:meth:`Writes.txn <doozer.node.writes.Writes.txn>`)."""
        return self.writes.txn(compare, ops, client)

    def nop(self, client: Optional[Hashable] = None) -> "defer.Deferred[int]":
        """A consensus round that changes nothing but takes a rev."""
        return self.writes.nop(client)

    # ------------------------------------------------------------------
    # leases (SPEC §9; the verbs and timers: doozer/node/leases.py)

    def grant(
        self, ttl: int, client: Optional[Hashable] = None
    ) -> "defer.Deferred[tuple[str, int]]":
        """Start a lease of ``ttl`` seconds; fires with ``(id, rev)``."""
        return node_leases.grant(self._node(), ttl, client)

    def revoke(self, lease_id: str, client: Optional[Hashable] = None) -> "defer.Deferred[int]":
        """End the lease and delete its files at one rev; fires with that rev."""
        return node_leases.revoke(self._node(), lease_id, client)

    def keepalive(self, lease_id: str) -> "defer.Deferred[int]":
        """Renew the lease (L2): fires with its ttl once renewed here."""
        return node_leases.keepalive(self._node(), lease_id)

    def lease(self, lease_id: str) -> dict[str, Any]:
        """``{"id", "ttl", "files"}`` of a lease, or ``NOENT``."""
        return node_leases.lease(self.store.leases, lease_id)

    def leases(self) -> list[dict[str, Any]]:
        """Every lease, by id."""
        return node_leases.leases(self.store.leases)

    # ------------------------------------------------------------------
    # reads

    def read_rev(
        self,
        rev: Optional[int],
        timeout: float,
        consistent: bool = False,
        client: Optional[Hashable] = None,
    ) -> "defer.Deferred[int]":
        """The rev a read should use, once the node can answer at it
        (:func:`doozer.node.reads.read_rev`)."""
        return reads.read_rev(self._node(), rev, timeout, consistent, client)

    def watch(
        self, glob: str, rev: Optional[int], limit: int, timeout: float
    ) -> "defer.Deferred[tuple[list[Event], int]]":
        """Changes to files matching ``glob`` from ``rev`` on
        (:func:`doozer.node.reads.watch`)."""
        return reads.watch(self.store, self.clock, glob, rev, limit, timeout)
