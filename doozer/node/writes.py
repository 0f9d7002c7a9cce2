"""A node's writes: the client verbs (set, delete, txn, nop), and the writes
proposed and not answered yet: propose, time out, settle.

The verbs check what can be checked before anything is proposed (the path,
what clients may write, the value's size, whether this node takes writes),
then propose. Every write, a client's or the node's own bookkeeping, becomes one
:class:`~doozer.store.mutation.Mutation` with this node's id and a fresh
request id. Its Deferred waits here until the instance holding it is
applied (the store's outcome answers it), a snapshot settles it, its
timeout passes (``UNAVAILABLE``, indeterminate: it may still commit) or the
node stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable, Iterable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer.consensus.durable import first_request_id
from doozer.errors import DoozerError
from doozer.node.leases import check_lease_id
from doozer.node.stats import WriteStats
from doozer.node.txn import check as txn_check
from doozer.store import Outcome, mutation
from doozer.store.cal import client_may_write
from doozer.store.path import validate_path

if TYPE_CHECKING:
    from doozer.node.node import Node

#: Seconds a bookkeeping write waits at least (a busy cluster must not make
#: a node give up on its own record).
BOOKKEEPING_TIMEOUT = 30.0


def _client_may_write(path: str) -> None:
    """SPEC §1: under /ctl clients may only touch CAL slots /ctl/cal/N."""
    refusal = client_may_write(path)
    if refusal is not None:
        raise DoozerError("FORBIDDEN", refusal)


class Writes:
    """The writes of one node: its client verbs and its pending writes (a
    collaborator the node holds)."""

    log = Logger()

    def __init__(self, node: "Node", incarnation: int = 0) -> None:
        self._node = node
        # D6 (CONSENSUS.md): ids of an incarnation never repeat those of an
        # earlier one, so a restarted node's new write is never taken for an
        # old one by the de-duplication record. 0 is the memory-only mode
        # (a restart there is a new node id).
        self._next_request = first_request_id(incarnation)
        # request -> (its Deferred, when a client's write was proposed; None
        # for the node's own bookkeeping, which the stats do not count)
        self._pending: dict[int, tuple[defer.Deferred[Outcome], Optional[float]]] = {}
        #: clients' writes committed and failed, and the commit latency (/metrics)
        self.stats = WriteStats()

    def __len__(self) -> int:
        return len(self._pending)

    # -- the client verbs (Node.set, delete, txn and nop delegate here) -----

    def set(
        self,
        path: str,
        value: bytes,
        rev: int = mutation.CLOBBER,
        client: Optional[Hashable] = None,
        lease: str = "",
    ) -> "defer.Deferred[int]":
        """Write ``value`` to the file ``path`` under precondition ``rev``.

        :param client: who asks (a connection): its share of the node's
            pending writes is bounded (:mod:`doozer.node.admission`).
        :param lease: the lease to attach the file to (SPEC §9); the write
            fails with the store's ``NOENT`` naming it when it is gone.
        :returns: a Deferred firing with the file's new rev.
        """
        validate_path(path)
        if path == "/":
            raise DoozerError("ISDIR", "/ is the root directory; write a file below it")
        _client_may_write(path)
        self._node.check_value_size(len(value))
        extras = {"lease": check_lease_id(lease)} if lease else None
        return self.write(mutation.SET, path, value, rev, client, extras).addCallback(
            lambda o: o.rev
        )

    def delete(
        self, path: str, rev: int = mutation.CLOBBER, client: Optional[Hashable] = None
    ) -> "defer.Deferred[int]":
        """Delete the file ``path`` under precondition ``rev``.

        :returns: a Deferred firing with the rev of the delete.
        """
        validate_path(path)
        if path == "/":
            raise DoozerError("ISDIR", "/ is the root directory and cannot be deleted")
        _client_may_write(path)
        return self.write(mutation.DEL, path, b"", rev, client).addCallback(lambda o: o.rev)

    def txn(
        self,
        compare: Iterable[tuple[str, int]],
        ops: Iterable[mutation.Op],
        client: Optional[Hashable] = None,
    ) -> "defer.Deferred[int]":
        """Apply ``ops`` at one rev if every ``(path, rev)`` of ``compare``
        holds and every op can be applied, else nothing (SPEC §10).

        :returns: a Deferred firing with the transaction's rev; it fails
            with the store's answer (``REV_MISMATCH``, ``ISDIR``...) naming
            the compare or op at fault (``index``, ``path``, ``in``).
        :raises DoozerError: what :func:`doozer.node.txn.check` refuses
            before anything is proposed.
        """
        node = self._node
        checked, checked_ops = txn_check(compare, ops, node.max_value)
        node.check_writable()
        return self.propose(
            mutation.TXN, "", b"", mutation.CLOBBER, timeout=node.write_timeout, compare=checked,
            client=client if client is not None else "", ops=checked_ops,
        ).addCallback(lambda o: o.rev)

    def nop(self, client: Optional[Hashable] = None) -> "defer.Deferred[int]":
        """Run one consensus round that changes nothing but takes a rev."""
        return self.write(mutation.NOP, "", b"", mutation.CLOBBER, client).addCallback(
            lambda o: o.rev
        )

    def write(
        self,
        kind: int,
        path: str,
        value: bytes,
        rev: int,
        client: Optional[Hashable],
        extras: Optional[dict[str, Any]] = None,
    ) -> "defer.Deferred[Outcome]":
        """A client's write of ``kind``, once this node takes writes
        (``READONLY`` when not), with the node's write timeout."""
        node = self._node
        node.check_writable()
        return self.propose(
            kind, path, value, rev, timeout=node.write_timeout,
            client=client if client is not None else "", extras=extras,
        )

    # -- pending writes -------------------------------------------------------

    def propose(
        self,
        kind: int,
        path: str,
        value: bytes,
        rev: int,
        timeout: Optional[float],
        compare: tuple[tuple[str, int], ...] = (),
        client: Optional[Hashable] = None,
        ops: tuple[mutation.Op, ...] = (),
        extras: Optional[dict[str, Any]] = None,
    ) -> "defer.Deferred[Outcome]":
        """Propose one mutation; its Deferred fires with the store's outcome.

        :param client: who asks (a connection), for the admission bounds;
            ``None`` is the node's own bookkeeping, never refused for want
            of room.
        :param ops: a TXN's ops (its bytes count against the bounds whole).
        :param extras: the lease fields of the mutation (``lease``, ``ttl``,
            ``leases``, ``basis``; see :class:`~doozer.store.mutation.Mutation`).
        :raises DoozerError: ``TOO_LARGE`` when the mutation does not fit
            one consensus datagram, ``BUSY``/``NOSPACE`` from admission.
        """
        node = self._node
        sequencer = node.sequencer
        assert sequencer is not None, "propose only in a cluster"
        request = self._next_request + 1
        until = node.applied_seqn + node.item_lifetime
        item = mutation.Mutation(
            kind, node.id, request, path, value, rev, until=until, compare=compare, ops=ops,
            **(extras or {}),
        ).encode()
        if client is not None:
            grows = kind in (mutation.SET, mutation.GRANT) or any(
                op.kind == mutation.SET for op in ops
            )
            node.admission.admit(request, client, len(item), grows)
        self._next_request = request
        now = node.clock.seconds()
        try:
            sequencer.propose(item, now)
        except ValueError:
            node.admission.release(request)
            error = DoozerError("TOO_LARGE", "the write does not fit one consensus datagram")
            if client is not None:
                self.stats.fail(error)
            raise error from None

        def forget(d: defer.Deferred[Outcome]) -> None:
            # The mutation may still be decided; we only stop waiting for it.
            self._pending.pop(request, None)

        d: defer.Deferred[Outcome] = defer.Deferred(forget)
        self._pending[request] = (d, None if client is None else now)
        node.schedule_pump()
        if timeout is not None:
            d.addTimeout(
                timeout, node.clock,
                onTimeoutCancel=_undecided if client is None else self._timed_out,
            )
        return d

    def _timed_out(self, result: object, timeout: float) -> Failure:
        """A client's write not decided in time: counted, then answered."""
        error = _undecided_error(timeout)
        self.stats.fail(error)
        return Failure(error)

    def internal(
        self,
        kind: int,
        path: str,
        value: bytes,
        rev: int = mutation.CLOBBER,
        compare: tuple[tuple[str, int], ...] = (),
        extras: Optional[dict[str, Any]] = None,
    ) -> "defer.Deferred[Optional[Outcome]]":
        """A bookkeeping write by the node itself; a failure is logged and
        the Deferred fires with ``None``."""
        timeout = max(self._node.write_timeout, BOOKKEEPING_TIMEOUT)
        d = self.propose(kind, path, value, rev, timeout=timeout, compare=compare, extras=extras)

        def failed(f: Failure) -> None:
            self.log.debug("bookkeeping write {path} failed: {err}", path=path, err=f.value)

        return d.addErrback(failed)

    def applied(self, outcomes: Iterable[Outcome]) -> None:
        """An instance was applied: answer this node's writers in it."""
        me = self._node.id
        pending = self._pending
        release = self._node.admission.release
        for outcome in outcomes:
            origin, request = outcome.key
            if origin != me:
                continue
            release(request)
            entry = pending.pop(request, None)
            if entry is not None:
                self._settle(entry, outcome)

    def _settle(
        self, entry: tuple["defer.Deferred[Outcome]", Optional[float]], outcome: Outcome
    ) -> None:
        """Answer a write with its outcome, counting a client's."""
        d, proposed = entry
        if proposed is not None:
            if outcome.error is None:
                self.stats.commit(self._node.clock.seconds() - proposed)
            else:
                self.stats.fail(outcome.error)
        _settle(d, outcome)

    def _fail(
        self, entry: tuple["defer.Deferred[Outcome]", Optional[float]], error: DoozerError
    ) -> None:
        """Fail a write with ``error``, counting a client's."""
        d, proposed = entry
        if proposed is not None:
            self.stats.fail(error)
        d.errback(error)

    def settle_from_store(self, settled: list[bytes]) -> None:
        """Answer the writes an installed snapshot settled.

        Writes the snapshot shows decided get their outcome from the store's
        record of applied request ids (snapshots carry it); without this
        they would time out as ``UNAVAILABLE`` although they committed. The
        ``settled`` items (this node's own instances at or below the
        snapshot, and what it forwarded) are never proposed again; those
        not in the record may or may not have been decided:
        ``UNAVAILABLE``, indeterminate.
        """
        node = self._node
        for request in list(self._pending):
            outcome = node.store.outcome_of((node.id, request))
            if outcome is not None:
                node.admission.release(request)
                self._settle(self._pending.pop(request), outcome)
        for item in settled:
            try:
                origin, request = mutation.Mutation.decode(item).key
            except mutation.MalformedMutation:
                continue
            if origin != node.id:
                continue
            node.admission.release(request)
            entry = self._pending.pop(request, None)
            if entry is not None:
                self._fail(
                    entry,
                    DoozerError(
                        "UNAVAILABLE",
                        "this node caught up from a snapshot while the write was in "
                        "flight; it may or may not have committed",
                        indeterminate=True,
                    ),
                )

    def fail_all(self, why: str) -> None:
        """Fail every pending write (the node stops): ``UNAVAILABLE``,
        indeterminate, since each may still be decided by the others."""
        pending, self._pending = self._pending, {}
        self._node.admission.clear()
        for entry in pending.values():
            self._fail(entry, DoozerError("UNAVAILABLE", why, indeterminate=True))


def _undecided(result: object, timeout: float) -> Failure:
    """``addTimeout``'s answer for a write not decided in time."""
    return Failure(_undecided_error(timeout))


def _undecided_error(timeout: float) -> DoozerError:
    return DoozerError(
        "UNAVAILABLE",
        f"the write was not committed within {timeout:g} s "
        "(no quorum?); it may still commit later",
        indeterminate=True,
    )


def _settle(d: "defer.Deferred[Outcome]", outcome: Outcome) -> None:
    """Fire a write's Deferred with its outcome (or the outcome's error)."""
    if outcome.error is not None:
        d.errback(outcome.error)
    else:
        d.callback(outcome)
