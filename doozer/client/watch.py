"""Watches: every change matching a glob, resumed across node failures."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import deferLater

from doozer.client.errors import ReadOnly, Timeout, Unavailable, Unreachable
from doozer.client.types import Event

if TYPE_CHECKING:
    from doozer.client import Client


class Watch:
    """Every change matching a glob, in rev order, across node failures.

    Use ``async for event in watch`` or ``await watch.next()``; stop with
    :meth:`close`. :attr:`next_rev` is where to resume: one past the last
    event handed out. A ``TOO_LATE`` (the history moved on while
    disconnected) is raised as :class:`TooLate`, never skipped.
    """

    def __init__(
        self,
        client: Client,
        glob: str,
        rev: Optional[int],
        limit: Optional[int],
        poll_timeout: float,
        *,
        deadline: Optional[float] = None,
    ) -> None:
        self.client = client
        self.glob = glob
        self.limit = limit
        self.poll_timeout = min(max(poll_timeout, 0.001), 300.0)
        self._polled_next = rev
        self._buffer: deque[Event] = deque()
        self._closed = False
        self._pending: Optional[Deferred[Any]] = None
        self._deadline = deadline

    @property
    def next_rev(self) -> Optional[int]:
        """The rev the next event will have at least (None before the first poll)."""
        if self._buffer:
            return self._buffer[0].rev
        return self._polled_next

    def __aiter__(self) -> "Watch":
        return self

    def __anext__(self) -> "Deferred[Event]":
        return ensureDeferred(self._next(StopAsyncIteration))

    def next(self) -> "Deferred[Event]":
        """The next event; fails with :class:`Timeout` past a deadline and
        ``CancelledError`` once closed."""
        return ensureDeferred(self._next(CancelledError))

    def close(self) -> None:
        """Stop: cancel the long-poll in flight; iteration ends."""
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()

    async def _next(self, ended: type[BaseException]) -> Event:
        clock = self.client.clock
        failing_since: Optional[float] = None
        delay = 0.1
        while not self._buffer:
            if self._closed:
                raise ended()
            hold = self.poll_timeout
            if self._deadline is not None:
                hold = min(hold, self._deadline - clock.seconds())
                if hold < 0.01:
                    raise Timeout(f"no change to {self.glob} within the time given")
            if self._polled_next is None:
                # pin "from now" to a rev first, so that a reconnect before
                # the first answer cannot skip changes made in between
                pinned: Deferred[Any] = self.client.rev()
                self._pending = pinned.addCallback(lambda rev: ([], rev + 1))
            else:
                self._pending = self.client.poll_once(
                    self.glob, self._polled_next, self.limit, hold
                )
            try:
                events, next_rev = await self._pending
            except CancelledError:
                if self._closed:
                    raise ended() from None
                raise
            except (Unreachable, ReadOnly, Unavailable):
                # every address failed: the node may be restarting; keep
                # trying from the same rev until reconnect_timeout passes
                now = clock.seconds()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since >= self.client.reconnect_timeout:
                    raise
                self._pending = deferLater(clock, delay, lambda: None)
                try:
                    await self._pending
                except CancelledError:
                    if self._closed:
                        raise ended() from None
                    raise
                delay = min(delay * 2, 2.0)
                continue
            finally:
                self._pending = None
            failing_since, delay = None, 0.1
            floor = self._polled_next or 0
            self._buffer.extend(e for e in events if e.rev >= floor)
            self._polled_next = next_rev
        return self._buffer.popleft()
