"""What the writer's batches cost: fsync latency and batch sizes, in fixed buckets.

The :class:`~doozer.storage.writer.Writer` tells its observers about every
synced batch (:class:`Batch`, on the reactor thread). :class:`StorageStats`
is one such observer: it keeps histograms with fixed bucket bounds, so its
memory stays the same however long the node runs, and gives the one line
the node logs when it stops. A ``/metrics`` endpoint can read the same
histograms (:attr:`Histogram.counts` are per bucket, Prometheus wants them
summed: :meth:`Histogram.cumulative`) or hook its own observer.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

__all__ = ["BYTES", "Batch", "Histogram", "SECONDS", "SIZES", "StorageStats"]


@dataclass(frozen=True)
class Batch:
    """One batch the writer wrote and synced.

    :param payloads: the appends it held.
    :param records: what the appenders counted in them (the node: consensus
        records; 1 per append unless told).
    :param bytes: the size of the record written (payloads and framing).
    :param write_seconds: time in ``write`` (on the writer's thread); it
        holds the sync too when the file's writes are synchronous
        (``O_DSYNC``, how the node's log is opened).
    :param fsync_seconds: time in the sink's ``sync`` (``fsync``), after
        the write; about 0 with ``O_DSYNC``.
    :param seconds: from handing the batch to the writer's thread until the
        reactor heard it was synced: the fsync plus the two hand-offs.
    """

    payloads: int
    records: int
    bytes: int
    write_seconds: float
    fsync_seconds: float
    seconds: float


#: Bucket bounds for durations (seconds): 20 µs to 10 s, 1-1.5-2-3-5-7 per decade.
SECONDS: tuple[float, ...] = tuple(
    round(m * 10.0**e, 9) for e in range(-5, 1) for m in (1, 1.5, 2, 3, 5, 7)
    if 20e-6 <= m * 10.0**e <= 7.0
) + (10.0,)
#: Bucket bounds for counts (records or payloads per batch): powers of two.
SIZES: tuple[float, ...] = tuple(float(1 << n) for n in range(13))  # 1 .. 4096
#: Bucket bounds for bytes per batch: 128 B to 1 MiB (the largest record), powers of two.
BYTES: tuple[float, ...] = tuple(float(1 << n) for n in range(7, 21))


class Histogram:
    """Counts of values in fixed buckets: ``counts[i]`` holds the values
    ``<= bounds[i]`` (and above the bound before); the last count holds
    the values above every bound.

    :param bounds: the buckets' upper bounds, increasing.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        if not bounds or any(later <= b for b, later in zip(bounds, bounds[1:])):
            raise ValueError(f"bucket bounds must be increasing, not {tuple(bounds)}")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def add(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value
        if value > self.max:
            self.max = value

    def quantile(self, q: float) -> float:
        """An upper bound of the ``q``-quantile (0 < q <= 1): the bound of
        the bucket it falls in, or the largest value seen for the last
        bucket (and never above it). 0 when nothing was counted."""
        if not self.count:
            return 0.0
        rank = max(1, -int(-q * self.count // 1))  # ceil(q * count), at least 1
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(self.bounds[i], self.max) if i < len(self.bounds) else self.max
        return self.max  # pragma: no cover (the counts add up to count)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, values <= it)`` per bucket, the last bound infinite."""
        out = []
        seen = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            seen += n
            out.append((bound, seen))
        return out

    def buckets(self) -> list[tuple[float, int]]:
        """``(upper bound, count)`` of the buckets that hold values."""
        return [(b, n) for b, n in zip((*self.bounds, float("inf")), self.counts) if n]


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.0f}"


def _n(value: float) -> str:
    return f"{value:.0f}" if value != float("inf") else "inf"


class StorageStats:
    """A writer observer that keeps bounded histograms of its batches.

    ``fsync`` is the time a batch took to become durable on the writer's
    thread: its write and its fsync (one ``O_DSYNC`` write for the log);
    ``round_trip`` adds the hand-offs to that thread and back."""

    def __init__(self) -> None:
        self.batches = 0
        self.records = 0
        self.bytes = 0
        self.fsync = Histogram(SECONDS)
        self.round_trip = Histogram(SECONDS)
        self.records_per_batch = Histogram(SIZES)
        self.bytes_per_batch = Histogram(BYTES)

    def observe(self, batch: Batch) -> None:
        """Count one synced batch (the writer calls this on the reactor)."""
        self.batches += 1
        self.records += batch.records
        self.bytes += batch.bytes
        self.fsync.add(batch.write_seconds + batch.fsync_seconds)  # until it is durable
        self.round_trip.add(batch.seconds)
        self.records_per_batch.add(batch.records)
        self.bytes_per_batch.add(batch.bytes)

    def summary(self) -> str:
        """One line: batches, fsync and round-trip p50/p99/max, records and
        bytes per batch p50/p99, and the fsync histogram's non-empty buckets."""
        if not self.batches:
            return "storage: 0 batches"
        f, r = self.fsync, self.round_trip
        n, b = self.records_per_batch, self.bytes_per_batch
        histogram = " ".join(
            f"{'>' + _ms(f.bounds[-1]) if bound == float('inf') else '<=' + _ms(bound)}:{count}"
            for bound, count in f.buckets())
        return (
            f"storage: {self.batches} batches, {self.records} records, {self.bytes} bytes; "
            f"fsync p50 {_ms(f.quantile(0.5))} ms p99 {_ms(f.quantile(0.99))} ms "
            f"max {_ms(f.max)} ms; batch round trip p50 {_ms(r.quantile(0.5))} ms "
            f"p99 {_ms(r.quantile(0.99))} ms; records per batch p50 {_n(n.quantile(0.5))} "
            f"p99 {_n(n.quantile(0.99))} max {_n(n.max)}; bytes per batch p50 "
            f"{_n(b.quantile(0.5))} p99 {_n(b.quantile(0.99))}; fsync ms {histogram}"
        )
