"""Tests for doozer.storage.stats: fixed-bucket histograms and the writer's summary."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doozer.storage.stats import BYTES, SECONDS, SIZES, Batch, Histogram, StorageStats


def test_values_land_in_the_bucket_of_their_upper_bound() -> None:
    """A value equal to a bound counts in that bound's bucket; above the
    last bound it counts in the overflow bucket."""
    h = Histogram((1.0, 2.0, 4.0))
    for value in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 9.0):
        h.add(value)
    assert h.counts == [2, 2, 2, 1]
    assert h.count == 7 and h.sum == pytest.approx(21.0) and h.max == 9.0
    assert h.buckets() == [(1.0, 2), (2.0, 2), (4.0, 2), (float("inf"), 1)]
    assert h.cumulative() == [(1.0, 2), (2.0, 4), (4.0, 6), (float("inf"), 7)]


def test_quantiles_are_bucket_bounds_never_above_the_max() -> None:
    h = Histogram((1.0, 2.0, 4.0))
    assert h.quantile(0.5) == 0.0  # nothing counted
    for value in [0.5] * 50 + [1.5] * 49 + [3.0]:
        h.add(value)
    assert h.quantile(0.5) == 1.0
    assert h.quantile(0.51) == 2.0
    assert h.quantile(0.99) == 2.0
    assert h.quantile(1.0) == 3.0  # the max, inside the 4.0 bucket
    h.add(100.0)
    assert h.quantile(1.0) == 100.0  # the overflow bucket answers with the max


@given(st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), min_size=1, max_size=200),
       st.floats(min_value=0.01, max_value=1.0))
def test_a_quantile_bounds_the_true_one_from_above(values: list[float], q: float) -> None:
    """The estimate is never below the exact quantile, and no further above
    it than one bucket (or the max)."""
    h = Histogram(SECONDS)
    for value in values:
        h.add(value)
    exact = sorted(values)[max(1, -int(-q * len(values) // 1)) - 1]
    estimate = h.quantile(q)
    assert estimate >= exact
    above = [b for b in SECONDS if b >= exact]
    assert estimate <= (above[0] if above else max(values))


def test_memory_is_fixed_however_many_values() -> None:
    h = Histogram(SIZES)
    rng = random.Random(1)
    for _ in range(10_000):
        h.add(rng.randrange(10_000))
    assert len(h.counts) == len(SIZES) + 1 and h.count == 10_000


@pytest.mark.parametrize("bounds", [(), (1.0, 1.0), (2.0, 1.0)])
def test_bounds_must_increase(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        Histogram(bounds)


def test_the_bucket_sets_increase() -> None:
    for bounds in (SECONDS, SIZES, BYTES):
        assert list(bounds) == sorted(set(bounds))
    assert SECONDS[0] == 20e-6 and SECONDS[-1] == 10.0 and BYTES[-1] == 1 << 20


def test_summary_line() -> None:
    """One line: batches, fsync and round-trip quantiles, records and bytes
    per batch, and the fsync histogram's non-empty buckets."""
    stats = StorageStats()
    assert stats.summary() == "storage: 0 batches"
    for _ in range(99):
        stats.observe(Batch(payloads=1, records=2, bytes=300, write_seconds=1e-5,
                            fsync_seconds=0.00012, seconds=0.0002))
    stats.observe(Batch(payloads=3, records=40, bytes=5000, write_seconds=1e-5,
                        fsync_seconds=0.012, seconds=0.02))
    assert (stats.batches, stats.records, stats.bytes) == (100, 238, 34700)
    assert stats.summary() == (
        "storage: 100 batches, 238 records, 34700 bytes; fsync p50 0.15 ms p99 0.15 ms "
        "max 12 ms; batch round trip p50 0.20 ms p99 0.20 ms; records per batch p50 2 p99 2 "
        "max 40; bytes per batch p50 512 p99 512; fsync ms <=0.15:99 <=15:1"
    )


def test_summary_of_a_stall_beyond_the_last_bucket() -> None:
    stats = StorageStats()
    stats.observe(Batch(1, 1, 100, 0.0, 12.5, 12.6))
    assert stats.summary().endswith("fsync ms >10000:1")
    assert "fsync p50 12500 ms" in stats.summary()
