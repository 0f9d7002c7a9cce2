"""A simulated data dir: what survives a crash of a durable node.

It models what an fsync guarantees, no more: records handed to the one
writer go out in batches (group commit: whatever arrives while a batch is
being written goes in the next one); a record is durable once the batch
holding it is fsynced and the node was told so. At a crash every record not
yet in a batch is lost, and the batch being written is either kept whole
(written and fsynced, but the node had not heard back yet) or lost whole (a
torn batch is cut at start-up, as ``doozer/storage`` does). Snapshots of the
store are files written whole before the floor record that refers to them
(a crash keeps them).
"""

from __future__ import annotations

import random
from typing import Any, Optional

from doozer.consensus.durable import Record, compact


class SimDisk:
    """The records and snapshots of one node's data dir.

    :param latency: (min, max) seconds one batch takes to write and fsync.
    """

    def __init__(self, latency: tuple[float, float]) -> None:
        self.latency = latency
        self.synced: list[Record] = []  # durable
        self.queued: list[Record] = []  # appended, not yet in a batch
        self.queued_token = 0
        self.batch: Optional[tuple[int, list[Record]]] = None  # being written
        self.snapshots: dict[int, Any] = {}  # seqn -> Snapshot (0: genesis)
        self.incarnation = 1
        self.generation = 0  # bumped at each crash: late completions are ignored
        self.collected = 0  # floor up to which acceptor records were deleted
        self.batches = 0
        self.kept_unacked = 0  # batches a crash kept before the node heard

    def append(self, token: int, records: list[Record]) -> None:
        if records:
            self.queued.extend(records)
            self.queued_token = token

    def start(self, rng: random.Random) -> Optional[float]:
        """Start the next batch if none is in flight; its latency, or None."""
        if self.batch is not None or not self.queued:
            return None
        self.batch = (self.queued_token, self.queued)
        self.queued = []
        return rng.uniform(*self.latency)

    def complete(self) -> tuple[int, list[Record]]:
        """The batch in flight is fsynced: its token and records."""
        assert self.batch is not None
        token, records = self.batch
        self.batch = None
        self.synced.extend(records)
        self.batches += 1
        return token, records

    def crash(self, rng: random.Random) -> list[Record]:
        """Lose what a crash loses; returns the records of a batch that was
        written but not yet acknowledged and survived."""
        kept: list[Record] = []
        if self.batch is not None and rng.random() < 0.5:
            kept = self.batch[1]
            self.synced.extend(kept)
            self.kept_unacked += 1
        self.batch = None
        self.queued = []
        self.generation += 1
        return kept

    def collect(self, floor: int) -> None:
        """Delete acceptor records at or below ``floor`` (garbage collection)."""
        if floor > self.collected:
            self.collected = floor
            self.synced = compact(self.synced, floor)
