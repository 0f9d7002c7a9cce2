"""The record of applied request ids: de-duplication bounded by deadlines.

A request may reach the log more than once: a non-member forwards its items
to a member and sends them again to another when it hears nothing back, so
two members may each propose the same item. Applying de-duplicates by the
request's ``(origin, request)`` key.

How long must a key be remembered? As long as a copy of its request can
still be decided. A count of revs is no bound for that (a busy cluster burns
20,000 revs in seconds while a copy waits in a queue), and time is not part
of the replicated state. So every item carries a **deadline**: the last
instance (seqn) in which it may be decided. Proposers never put an item in a
later instance, and applying refuses it there (see
:meth:`doozer.store.Store.apply`). A key can then be forgotten as soon as
its deadline has passed: no copy can be applied after that, by construction,
however fast the cluster runs. The record is replicated state (every node
drops the same keys after the same instance) and travels in snapshots.
"""

from __future__ import annotations

import heapq
from typing import Iterator, Optional

from doozer.store.types import Outcome

Key = tuple[str, int]


class Dedup:
    """Outcomes of applied requests, each kept until its deadline passes."""

    def __init__(self) -> None:
        self._outcomes: dict[Key, tuple[Outcome, int]] = {}
        self._deadlines: list[tuple[int, Key]] = []  # heap of (deadline, key)

    def __len__(self) -> int:
        return len(self._outcomes)

    def get(self, key: Key) -> Optional[Outcome]:
        """The outcome of ``key`` if it is remembered, else None."""
        entry = self._outcomes.get(key)
        return None if entry is None else entry[0]

    def add(self, key: Key, outcome: Outcome, deadline: int) -> None:
        """Remember ``key`` until instance ``deadline`` has been applied."""
        self._outcomes[key] = (outcome, deadline)
        heapq.heappush(self._deadlines, (deadline, key))

    def expire(self, seqn: int) -> None:
        """Forget the keys no copy of which can be applied after ``seqn``."""
        heap = self._deadlines
        while heap and heap[0][0] <= seqn:
            _, key = heapq.heappop(heap)
            entry = self._outcomes.get(key)
            if entry is not None and entry[1] <= seqn:
                del self._outcomes[key]

    def entries(self) -> Iterator[tuple[Key, Outcome, int]]:
        """``(key, outcome, deadline)`` of every remembered key (snapshots)."""
        for key, (outcome, deadline) in self._outcomes.items():
            yield key, outcome, deadline
