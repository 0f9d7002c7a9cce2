"""Who waits on the store: watches (for changes to a glob) and rev waiters.

Watches are indexed by the literal prefix of their glob, so that one change
wakes only the waiters under its path or one of its ancestors instead of
scanning them all (10,000 waiters, one write). Each waiter is a Deferred
whose canceller removes it at once (a client that goes away costs nothing).
"""

from __future__ import annotations

import heapq
from functools import partial
from typing import Callable

from twisted.internet.defer import Deferred

from doozer.store.history import whole_revs
from doozer.store.path import ancestors, compile_glob, glob_prefix
from doozer.store.types import Event

#: ``events(glob, from_rev, limit)``: the store's changes matching a glob.
EventsFn = Callable[[str, int, int], list[Event]]


class Waiters:
    """The watches and rev waiters of one store."""

    def __init__(self) -> None:
        # glob prefix -> {Deferred: (glob, from_rev, limit)}; the glob, not its
        # matcher, so that 10,000 distinct watches hold no compiled matchers.
        self._watchers: dict[str, dict[Deferred[list[Event]], tuple[str, int, int]]] = {}
        self._revs: dict[int, list[Deferred[int]]] = {}
        self._heap: list[int] = []

    # -- watches -------------------------------------------------------------

    def watch(self, glob: str, from_rev: int, limit: int) -> "Deferred[list[Event]]":
        """A waiter for the next changes to ``glob`` at or after ``from_rev``."""
        prefix = glob_prefix(glob)
        d: Deferred[list[Event]] = Deferred(partial(self._forget_watch, prefix))
        self._watchers.setdefault(prefix, {})[d] = (glob, from_rev, limit)
        return d

    def _forget_watch(self, prefix: str, d: Deferred[list[Event]]) -> None:
        """The canceller of a watch: drop its waiter from the index."""
        bucket = self._watchers.get(prefix)
        if bucket is not None:
            bucket.pop(d, None)
            if not bucket:
                del self._watchers[prefix]

    def watch_count(self) -> int:
        """How many watches are waiting."""
        return sum(len(bucket) for bucket in self._watchers.values())

    def wake(self, new_events: list[Event]) -> None:
        """Fire every watch that one of ``new_events`` matches."""
        if not new_events or not self._watchers:
            return
        ready: list[tuple[Deferred[list[Event]], str, int, int]] = []
        for event in new_events:
            # Only waiters indexed under the path or one of its ancestors can
            # match it: look those up instead of scanning every waiter.
            for key in ancestors(event.path) + [event.path]:
                bucket = self._watchers.get(key)
                if bucket is None:
                    continue
                for d, (glob, from_rev, limit) in list(bucket.items()):
                    if event.rev >= from_rev and compile_glob(glob)(event.path):
                        del bucket[d]
                        ready.append((d, glob, from_rev, limit))
                if not bucket:
                    del self._watchers[key]
        # Watches asking the same (glob, from_rev, limit) get the very same
        # list: 10,000 watchers of one key are answered with one list, which
        # a front end may then render once (nothing changes these lists).
        answers: dict[tuple[str, int, int], list[Event]] = {}
        for d, glob, from_rev, limit in ready:
            asked = (glob, from_rev, limit)
            answer = answers.get(asked)
            if answer is None:
                # No event before this batch matched (the waiter would have
                # fired then), so its answer lies within the batch.
                match = compile_glob(glob)
                answer = answers[asked] = whole_revs(
                    [e for e in new_events if e.rev >= from_rev and match(e.path)], limit)
            d.callback(answer)

    def rewatch(self, events: EventsFn, oldest: int, too_late: Callable[[], Exception]) -> None:
        """The store's contents were replaced (a snapshot): fire the watches
        the new history already answers, fail with ``too_late()`` those it no
        longer covers, and keep the others waiting."""
        watchers, self._watchers = self._watchers, {}
        late = []
        for prefix, bucket in watchers.items():
            for d, (glob, from_rev, limit) in bucket.items():
                if from_rev < oldest:
                    late.append(d)
                    continue
                found = events(glob, from_rev, limit)
                if found:
                    d.callback(found)
                else:
                    self._watchers.setdefault(prefix, {})[d] = (glob, from_rev, limit)
        for d in late:
            d.errback(too_late())

    # -- revs ----------------------------------------------------------------

    def wait_rev(self, rev: int) -> "Deferred[int]":
        """A waiter for the store to reach ``rev`` (fired by :meth:`wake_revs`)."""
        d: Deferred[int] = Deferred(partial(self._forget_rev, rev))
        waiters = self._revs.get(rev)
        if waiters is None:
            waiters = self._revs[rev] = []
            heapq.heappush(self._heap, rev)
        waiters.append(d)
        return d

    def _forget_rev(self, rev: int, d: Deferred[int]) -> None:
        """The canceller of :meth:`wait_rev` (the heap entry goes stale)."""
        waiters = self._revs.get(rev)
        if waiters is not None and d in waiters:
            waiters.remove(d)
            if not waiters:
                del self._revs[rev]

    def rev_waiter_count(self) -> int:
        """How many rev waiters are waiting."""
        return sum(len(w) for w in self._revs.values())

    def wake_revs(self, rev: int) -> None:
        """Fire the rev waiters that ``rev`` has reached."""
        heap = self._heap
        ready: list[Deferred[int]] = []
        while heap and heap[0] <= rev:
            ready.extend(self._revs.pop(heapq.heappop(heap), ()))
        for d in ready:
            d.callback(rev)
