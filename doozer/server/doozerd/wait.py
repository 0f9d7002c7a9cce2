"""doozerd's WAIT: the first change to a file matching a glob, however long it takes.

The node's watch takes a timeout; a WAIT has none, so :func:`first_event`
re-arms the watch every :data:`WAIT_SLICE` seconds from where it left off.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import defer
from twisted.python.failure import Failure

from doozer.errors import DoozerError
from doozer.node import Node
from doozer.store import Event

#: A WAIT never times out; it re-arms the node's watch at this interval
#: so that no timer is ever scheduled absurdly far in the future.
WAIT_SLICE = 3600.0


def first_event(node: Node, glob: str, rev: int) -> "defer.Deferred[Event]":
    """The first change to a file matching ``glob`` at ``rev`` or later, however long it takes.

    The node's watch takes a timeout; this re-arms it every
    :data:`WAIT_SLICE` seconds from where it left off. Cancelling the
    returned Deferred cancels the watch at once.

    :raises DoozerError: at once, for a bad glob or a rev older than the history.
    """
    wait = _Wait(node, glob)
    result: defer.Deferred[Event] = defer.Deferred(wait.cancel)
    wait.result = result
    try:
        wait.arm(rev)
    except DoozerError:
        wait.result = None
        raise
    return result


class _Wait:
    """One WAIT while it waits: the node's current watch and the answer to give.

    A waiting WAIT refers to itself in a cycle (its answer's canceller is
    one of its methods); every way it ends (answered, failed, cancelled)
    lets go of both, so that a dropped WAIT is freed at once by reference
    counting rather than at the next full garbage collection, which a node
    makes rarely (50,000 dropped WAITs kept 200 MB until then).
    """

    __slots__ = ("node", "glob", "result", "watch")

    def __init__(self, node: Node, glob: str) -> None:
        self.node = node
        self.glob = glob
        self.result: Optional[defer.Deferred[Event]] = None
        self.watch: Optional[defer.Deferred[Any]] = None

    def arm(self, start: int) -> None:
        watch = self.node.watch(self.glob, start, 1, WAIT_SLICE)
        self.watch = watch
        watch.addCallbacks(self.got, self.failed)

    def cancel(self, _: Any) -> None:
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.cancel()  # fails it, and so this WAIT (see failed)

    def got(self, found: tuple[list[Event], int]) -> None:
        self.watch = None
        events, next_rev = found
        if not events:
            try:
                return self.arm(next_rev)
            except DoozerError as e:
                return self.failed(Failure(e))
        result, self.result = self.result, None
        if result is not None:
            result.callback(events[0])

    def failed(self, failure: Failure) -> None:
        self.watch = None
        result, self.result = self.result, None
        if result is not None:
            result.errback(failure)
