"""Running a simulation's seeds on every core there is (two at most).

The seeds are independent and CPU-bound, so on a machine with two or more
cores they run in two forked processes (CI has two cores and nothing else
to run meanwhile); on one core, in the test's own process.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def workers() -> Iterator[Optional[concurrent.futures.Executor]]:
    """Two forked worker processes, or None on a machine with one core."""
    if min(2, os.cpu_count() or 1) < 2:
        yield None
        return
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        yield pool


def map_seeds(pool: Optional[concurrent.futures.Executor], fn: Callable[[T], R],
              seeds: Iterable[T]) -> list[R]:
    """``fn`` of every seed, in ``pool`` when there is one (``fn`` must be a
    module-level function: it is pickled by name)."""
    return list(pool.map(fn, seeds) if pool is not None else map(fn, seeds))
