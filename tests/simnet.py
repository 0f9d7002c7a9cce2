"""The simulated network both simulators share: datagrams in flight.

``tests/sim.py`` (sequencers and replicas) and ``tests/nodesim.py`` (whole
nodes) send their packed datagrams through one :class:`SimNet`: each is
delayed by a seeded random time, may be lost or duplicated, and is dropped
at delivery when its sender and receiver are cut apart then (a partition,
a one-way loss). What a datagram is addressed to (a node id, an address)
is the simulator's business; the network only needs the receiver's name to
judge a cut.
"""

from __future__ import annotations

import heapq
import random
from typing import Any, Callable, Iterable, Iterator, Optional


class SimNet:
    """Datagrams in flight, on one seeded random generator.

    :param rng: the simulation's generator (one per simulation, so a seed
        replays the whole run).
    :param delay: (min, max) seconds a datagram travels.
    """

    def __init__(self, rng: random.Random, delay: tuple[float, float]) -> None:
        self.rng = rng
        self.delay = delay
        self.loss = 0.0  # chance a datagram is lost
        self.dup = 0.0  # chance a datagram arrives twice
        #: (sender, receiver) names that cannot talk now
        self.blocked: set[tuple[str, str]] = set()
        self.sent = 0  # datagrams sent (lost ones too)
        self._heap: list[tuple[float, int, str, Any, bytes]] = []
        self._seq = 0

    # -- sending and delivering -----------------------------------------

    def send(self, src: str, to: Any, data: bytes, now: float) -> None:
        """``src`` sends ``data`` to ``to`` (whatever the simulator delivers by)."""
        self.sent += 1
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            return
        copies = 2 if self.dup and rng.random() < self.dup else 1
        for _ in range(copies):
            self.hold(now + rng.uniform(*self.delay), src, to, data)

    def hold(self, at: float, src: str, to: Any, data: bytes) -> None:
        """Deliver ``data`` at ``at`` (a paused receiver's datagrams wait)."""
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, src, to, data))

    def next_time(self) -> float:
        """When the next datagram arrives (infinity when none is in flight)."""
        return self._heap[0][0] if self._heap else float("inf")

    def due(self, t: float, receiver: Callable[[Any], Optional[str]]) -> Iterator[tuple[str, Any, bytes]]:
        """The datagrams arriving by ``t``, in order, as ``(src, to, data)``;
        those whose receiver (``receiver(to)``: its name, or None when there
        is none) is cut off from their sender now are dropped."""
        heap = self._heap
        while heap and heap[0][0] <= t:
            _, _, src, to, data = heapq.heappop(heap)
            name = receiver(to)
            if name is None or (src, name) in self.blocked:
                continue
            yield src, to, data

    # -- cuts -------------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[str]], names: Iterable[str]) -> None:
        """Only nodes in the same group can talk (a name in no group talks
        to nobody)."""
        side = {n: i for i, g in enumerate(groups) for n in g}
        names = list(names)
        self.blocked = {
            (a, b) for a in names for b in names
            if a != b and side.get(a, -1) != side.get(b, -2)
        }

    def one_way(self, src: str, dest: str) -> None:
        """``dest`` stops hearing ``src``; ``src`` still hears ``dest``."""
        self.blocked = {(src, dest)}

    def deafen(self, node: str, names: Iterable[str]) -> None:
        """``node`` hears nobody; everybody still hears it."""
        self.blocked = {(other, node) for other in names if other != node}

    def heal(self) -> None:
        """Everyone can talk again."""
        self.blocked = set()
