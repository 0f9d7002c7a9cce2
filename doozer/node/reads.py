"""Reads and watches of one node: at which rev a read answers, and the
long-poll of a watch with its timer.

A read at the current rev needs nothing; a read at a rev this node has not
applied yet waits for it (bounded by the request's timeout); a consistent
read first runs a consensus round (a no-op), so it reflects every write
acknowledged anywhere before it started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable, NoReturn, Optional

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from doozer.errors import DoozerError
from doozer.store import Event, Store

if TYPE_CHECKING:
    from doozer.node.node import Node


def read_rev(
    node: "Node",
    rev: Optional[int],
    timeout: float,
    consistent: bool = False,
    client: Optional[Hashable] = None,
) -> "defer.Deferred[int]":
    """The rev a read should use, once ``node`` can answer at it.

    :param rev: the rev asked for, or ``None`` for the current one.
    :param timeout: seconds to wait for a rev this node has not applied.
    :param consistent: first run a consensus round, so the read reflects
        every write acknowledged anywhere before it started.
    :returns: a Deferred firing with the rev to read at; it fails with
        ``TIMEOUT`` or ``TOO_LATE``.
    """
    if consistent:
        d = node.nop(client=client)
        if rev is not None:
            return d.addCallback(lambda _: wait_rev(node.store, node.clock, rev, timeout))
        return d
    if rev is None:
        return defer.succeed(node.store.rev)
    return wait_rev(node.store, node.clock, rev, timeout)


def wait_rev(store: Store, clock: IReactorTime, rev: int, timeout: float) -> "defer.Deferred[int]":
    """Fires with ``rev`` once ``store`` has applied it (``TOO_LATE`` when it
    left the history window, ``TIMEOUT`` after ``timeout`` seconds)."""
    store.check_not_too_late(rev)
    if rev <= store.rev:
        return defer.succeed(rev)

    def timed_out(result: object, timeout: float) -> NoReturn:
        raise DoozerError(
            "TIMEOUT",
            f"rev {rev} was not reached within {timeout:g} s (this node is at {store.rev})",
        )

    d = store.wait_rev(rev)
    d.addTimeout(timeout, clock, onTimeoutCancel=timed_out)
    return d


def watch(
    store: Store, clock: IReactorTime, glob: str, rev: Optional[int], limit: int, timeout: float
) -> "defer.Deferred[tuple[list[Event], int]]":
    """Changes to files matching ``glob`` from ``rev`` on.

    :returns: a Deferred firing with ``(events, next)``; ``events`` is
        empty when ``timeout`` passed first; it fails with the store's
        ``BAD_GLOB`` or ``TOO_LATE``. Cancelling it (the client went
        away) drops the waiter at once.
    """
    start = store.rev + 1 if rev is None else rev
    d = store.watch(glob, start, limit)
    # One timer and two callbacks, not Deferred.addTimeout (used for
    # writes): a node holds tens of thousands of watches, and
    # addTimeout's four closures and two more callback entries cost
    # 1.2 KB more per held watch (tracemalloc: 3,126 against 1,902
    # bytes; bench/watch_fanout.py: 10.2 against 9.0 KiB of RSS).
    timer = clock.callLater(timeout, d.cancel)

    def got(events: list[Event]) -> tuple[list[Event], int]:
        if timer.active():
            timer.cancel()
        return events, events[-1].rev + 1

    def timed_out(f: Failure) -> Any:
        f.trap(defer.CancelledError)
        if timer.active():  # cancelled by the caller (the client went away)
            timer.cancel()
            return f
        return [], max(start, store.rev + 1)

    return d.addCallbacks(got, timed_out)
