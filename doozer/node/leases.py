"""The node's half of leases: the client's lease verbs, expiry timers and
keepalives (SPEC §9, CONSENSUS.md §L).

- **Verbs.** :func:`grant`, :func:`revoke`, :func:`keepalive`, :func:`lease`
  and :func:`leases` are what :class:`~doozer.node.node.Node` answers the
  front ends with (its methods of those names delegate here): a grant or a
  revoke is a write like any other (:meth:`Writes.write
  <doozer.node.writes.Writes.write>`), a keepalive joins this turn's RENEW.

The store (:mod:`doozer.store.leases`) holds what every node agrees on: each
lease's ttl and its **basis**, the log position of its grant or of the last
renewal applied. What no two nodes share is *when* each applied a basis;
that is kept here, on this node's own clock:

- **Timers (L3).** After each applied instance the node drains
  :meth:`~doozer.store.leases.Leases.take_changes` and notes, for each new
  basis, its own time. When ``ttl × 1.02`` has passed since then with no
  later basis applied, a voting member proposes ``EXPIRE(id, basis)``;
  the store acts on it only if the basis is still that one (L4), so a
  renewal ordered first wins and duplicate EXPIREs from several members are
  harmless. When the lease table is replaced (a snapshot installed, a
  restart from the data dir, a restore) every lease's timer starts again
  from now: a node never times a basis from before it learned it.
  Deadlines wait in a heap and one timer is set for the earliest, so a
  check costs what is due, not a scan of every lease, and a node timing no
  lease has no timer at all. A lease has one entry, not one per renewal: a
  renewal only notes its basis, and the entry, when it comes due, is pushed
  again at the deadline of the basis then current; only a renewal whose
  deadline comes before the entry (one waiting to re-propose an EXPIRE,
  ``REPROPOSE_AFTER`` away) gets an entry of its own, and the one it
  supersedes is dropped when due (keeping it alone made such a lease
  expire up to 5 s late: the lease simulation, seed 40). (An entry per renewal,
  dropped when due, made the heap grow with keepalives/s × ttl: a client
  renewing in a loop cost the node ~300 bytes per keepalive for the ttl.)
- **Keepalives (L2).** The keepalives that arrive in one reactor turn travel
  in one ``RENEW`` (at most :data:`~doozer.store.mutation.MAX_RENEW` ids
  each); each is answered only once its own ``RENEW`` is decided and
  applied here, ``NOENT`` when the lease was gone by then. A keepalive never
  joins a ``RENEW`` already proposed: the client times its lease from the
  send of the attempt that was answered, so that attempt's RENEW must be
  ordered after it was sent.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, Hashable, Optional

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer.errors import DoozerError
from doozer.store import Outcome, mutation
from doozer.store.leases import LEASE_ID, MAX_TTL, MIN_TTL, Leases, Position

if TYPE_CHECKING:
    from doozer.node.node import Node

#: The margin on a lease's ttl for clock-rate drift of up to 1% (SPEC §9 G1).
DRIFT = 1.02
#: Seconds between two looks at deadlines that came due while this node did
#: not vote (a voting node looks at each deadline when it comes).
CHECK_EVERY = 0.5
#: Seconds after which an EXPIRE whose lease is still there (its proposal
#: failed or was lost) is proposed again.
REPROPOSE_AFTER = 5.0
#: Who the node's admission counts RENEWs under: keepalives share one
#: client's bounds, so a keepalive storm cannot crowd out writes.
KEEPALIVE_CLIENT = ("keepalive",)


def check_lease_id(lease_id: str) -> str:
    """``lease_id``, or ``BAD_ARG`` when it cannot name a lease."""
    if not isinstance(lease_id, str) or not LEASE_ID.match(lease_id):
        raise DoozerError("BAD_ARG", f"{str(lease_id)[:70]!r} is not a lease id")
    return lease_id


# -- the verbs ------------------------------------------------------------------


def grant(
    node: "Node", ttl: int, client: Optional[Hashable] = None
) -> "defer.Deferred[tuple[str, int]]":
    """Start a lease of ``ttl`` seconds; fires with ``(id, rev)``."""
    if type(ttl) is not int or not MIN_TTL <= ttl <= MAX_TTL:
        raise DoozerError("BAD_ARG", f"a ttl is an integer from {MIN_TTL} to {MAX_TTL} seconds")
    lease_id = node.new_id()
    return node.writes.write(
        mutation.GRANT, "", b"", mutation.CLOBBER, client, {"lease": lease_id, "ttl": ttl}
    ).addCallback(lambda o: (lease_id, o.rev))


def revoke(node: "Node", lease_id: str, client: Optional[Hashable] = None) -> "defer.Deferred[int]":
    """End the lease and delete its files at one rev; fires with that rev."""
    extras = {"lease": check_lease_id(lease_id)}
    return node.writes.write(
        mutation.REVOKE, "", b"", mutation.CLOBBER, client, extras
    ).addCallback(lambda o: o.rev)


def keepalive(node: "Node", lease_id: str) -> "defer.Deferred[int]":
    """Renew the lease (L2): fires with its ttl once renewed here, fails
    with ``NOENT`` when it is gone, ``UNAVAILABLE`` without a quorum."""
    check_lease_id(lease_id)
    node.check_writable()
    return node.lease_timers.keepalive(lease_id)


def lease(table: Leases, lease_id: str) -> dict[str, Any]:
    """``{"id", "ttl", "files"}`` of a lease of ``table``, or ``NOENT``."""
    found = table.get(check_lease_id(lease_id))
    if found is None:
        raise _gone(lease_id)
    return lease_json(found)


def leases(table: Leases) -> list[dict[str, Any]]:
    """Every lease of ``table``, by id."""
    return [lease_json(found) for found in sorted(table, key=lambda x: x.id)]


class LeaseTimers:
    """The expiry timers and pending keepalives of one node."""

    log = Logger()

    def __init__(self, node: "Node") -> None:
        self._node = node
        self._table: Leases = node.store.leases
        #: id -> (basis, when this node applied it, on its clock)
        self._applied: dict[str, tuple[Position, float]] = {}
        #: (when, id): look at the lease then; stale unless _due[id] is when
        self._heap: list[tuple[float, str]] = []
        #: id -> when its live heap entry is due (one per lease, L3)
        self._due: dict[str, float] = {}
        #: EXPIREs proposed and not yet answered
        self._inflight: set[tuple[str, Position]] = set()
        self._check_call: Optional[IDelayedCall] = None
        #: keepalives of this turn, not yet proposed: id -> their Deferreds
        self._batch: dict[str, list[defer.Deferred[int]]] = {}
        self._flush_call: Optional[IDelayedCall] = None
        #: counts for /metrics and tests
        self.expires_proposed = 0
        self.renews_proposed = 0
        node.on_applied.append(lambda seqn, items, outcomes: self.sync())
        node.on_running.append(self.start)

    def __len__(self) -> int:
        """Leases this node is timing."""
        return len(self._applied)

    # -- timers -----------------------------------------------------------

    def start(self) -> None:
        """The node runs: look at the deadlines when the first comes due."""
        self._arm()

    def _arm(self, at: Optional[float] = None) -> None:
        """Have :meth:`check` run at the earliest deadline (or ``at``); no
        timer at all while no lease is timed."""
        node = self._node
        if not node.running or not self._heap:
            return
        when = self._heap[0][0] if at is None else at
        call = self._check_call
        if call is not None and call.active():
            if call.getTime() <= when:
                return
            call.cancel()
        self._check_call = node.clock.callLater(max(0.0, when - node.clock.seconds()),
                                                self._on_check)

    def stop(self) -> None:
        for call in (self._check_call, self._flush_call):
            if call is not None and call.active():
                call.cancel()
        self._check_call = self._flush_call = None
        batch, self._batch = self._batch, {}
        for waiting in batch.values():
            for d in waiting:
                d.errback(DoozerError("UNAVAILABLE", "the node is shutting down"))

    def started(self, lease_id: str) -> Optional[float]:
        """When this node started timing the lease's current basis."""
        entry = self._applied.get(lease_id)
        return None if entry is None else entry[1]

    def sync(self) -> None:
        """Learn the bases applied since the last call (L3), or restart
        every timer from now when the table was replaced."""
        table = self._node.store.leases
        now = self._node.clock.seconds()
        if table is not self._table:
            self._table = table
            table.take_changes()
            self._applied.clear()
            self._heap.clear()
            self._due.clear()
            for lease in table:
                self._time(lease.id, lease.basis, lease.ttl, now)
            return
        for lease_id, basis in table.take_changes():
            found = table.get(lease_id)
            if basis is None or found is None:
                self._applied.pop(lease_id, None)
                self._due.pop(lease_id, None)  # its entry is dropped when due
            elif found.basis == basis:
                self._time(lease_id, basis, found.ttl, now)

    def _time(self, lease_id: str, basis: Position, ttl: int, now: float) -> None:
        self._applied[lease_id] = (basis, now)
        deadline = now + ttl * DRIFT
        due = self._due.get(lease_id)
        # A renewal only moves the deadline later, so the lease's entry can
        # stay where it is and be moved when it comes due; unless that entry
        # waits longer than the new deadline (an EXPIRE's re-proposal time,
        # REPROPOSE_AFTER away): then the new deadline gets its own entry
        # and the old one is dropped when it comes due.
        if due is None or deadline < due:
            self._push(deadline, lease_id)

    def _push(self, when: float, lease_id: str) -> None:
        self._due[lease_id] = when
        heapq.heappush(self._heap, (when, lease_id))
        self._arm()

    def _on_check(self) -> None:
        self._check_call = None
        if not self._node.running:
            return
        self.check()
        if self._node.voting:
            self._arm()
        else:  # due deadlines wait until this node votes; look again later
            self._arm(self._node.clock.seconds() + CHECK_EVERY)

    def check(self) -> None:
        """Propose EXPIRE for each lease whose deadline passed here; only a
        voting member proposes (the heap waits while this node does not)."""
        node = self._node
        self.sync()
        if not node.voting:
            return
        now = node.clock.seconds()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, lease_id = heapq.heappop(heap)
            if self._due.get(lease_id) != when:
                continue  # superseded by an earlier deadline, or ended
            del self._due[lease_id]
            current = self._applied.get(lease_id)
            lease = self._table.get(lease_id)
            if current is None or lease is None:
                continue  # ended since
            basis, start = current
            deadline = start + lease.ttl * DRIFT
            if deadline > now:  # renewed since: look again at its deadline
                self._push(deadline, lease_id)
                continue
            key = (lease_id, basis)
            self._push(now + REPROPOSE_AFTER, lease_id)
            if key in self._inflight:
                continue
            self._inflight.add(key)
            self.expires_proposed += 1
            d = node.writes.internal(mutation.EXPIRE, "", b"",
                                     extras={"lease": lease_id, "basis": basis})
            d.addBoth(self._answered, key)

    def _answered(self, result: object, key: tuple[str, Position]) -> None:
        # proposed again REPROPOSE_AFTER later if the lease is still there
        self._inflight.discard(key)

    # -- keepalives ---------------------------------------------------------

    def keepalive(self, lease_id: str) -> "defer.Deferred[int]":
        """Renew the lease in this turn's RENEW; fires with its ttl once
        that RENEW is applied here with the lease present (L2)."""
        d: defer.Deferred[int] = defer.Deferred()
        self._batch.setdefault(lease_id, []).append(d)
        if self._flush_call is None:
            self._flush_call = self._node.clock.callLater(0, self._flush)
        return d

    def _flush(self) -> None:
        self._flush_call = None
        batch, self._batch = self._batch, {}
        ids = list(batch)
        for at in range(0, len(ids), mutation.MAX_RENEW):
            chunk = {i: batch[i] for i in ids[at:at + mutation.MAX_RENEW]}
            self._renew(chunk)

    def _renew(self, chunk: dict[str, list["defer.Deferred[int]"]]) -> None:
        node = self._node
        try:
            d = node.writes.propose(
                mutation.RENEW, "", b"", mutation.CLOBBER, timeout=node.write_timeout,
                client=KEEPALIVE_CLIENT, extras={"leases": tuple(chunk)},
            )
        except DoozerError as e:
            _fail(chunk, e)
            return
        self.renews_proposed += 1

        def decided(outcome: Outcome) -> None:
            gone = set(outcome.gone)
            for lease_id, waiting in chunk.items():
                lease = node.store.leases.get(lease_id)
                for w in waiting:
                    if lease_id in gone or lease is None:
                        w.errback(_gone(lease_id))
                    else:
                        w.callback(lease.ttl)

        def failed(f: Failure) -> None:
            _fail(chunk, f.value if isinstance(f.value, DoozerError)
                  else DoozerError("UNAVAILABLE", str(f.value)))

        d.addCallbacks(decided, failed)


def lease_json(lease: Any) -> dict[str, Any]:
    """A lease as the API shows it (SPEC §9)."""
    return {"id": lease.id, "ttl": lease.ttl, "files": sorted(lease.files)}


def _gone(lease_id: str) -> DoozerError:
    return DoozerError("NOENT", f"lease {lease_id} does not exist", lease=lease_id)


def _fail(chunk: dict[str, list["defer.Deferred[int]"]], error: BaseException) -> None:
    for waiting in chunk.values():
        for w in waiting:
            w.errback(error)
