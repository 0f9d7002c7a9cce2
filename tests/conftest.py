"""Shared test setup: tests import their helpers (apiutil, sim...) by name,
and a test fails if it logged an unhandled error (pytest lacks trial's check)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import pytest
from twisted.logger import globalLogPublisher

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def no_logged_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test when something logged a failure (an error the code
    swallowed), unless it is marked ``logs_failures`` (it provokes one)."""
    errors: list = []

    def observe(event: dict) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield
    finally:
        globalLogPublisher.removeObserver(observe)
    if errors and request.node.get_closest_marker("logs_failures") is None:
        from twisted.logger import formatEvent

        details = "\n".join(
            formatEvent(e) + ("\n" + e["log_failure"].getTraceback() if e.get("log_failure") else "")
            for e in errors
        )
        pytest.fail(f"logged errors:\n{details}")


T = TypeVar("T")
R = TypeVar("R")


@pytest.fixture(scope="session")
def seed_workers() -> Iterator[Optional[concurrent.futures.Executor]]:
    """Processes for the simulations' seeds: independent and CPU-bound, so
    on a machine with two or more cores they run in two forked processes
    (CI has two cores and nothing else to run meanwhile); None on one core."""
    if min(2, os.cpu_count() or 1) < 2:
        yield None
        return
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        yield pool


def map_seeds(workers: Optional[concurrent.futures.Executor], fn: Callable[[T], R],
              seeds: Iterable[T]) -> list[R]:
    """``fn`` of every seed, in the workers when there are some (``fn`` must
    be a module-level function: it is pickled by name)."""
    return list(workers.map(fn, seeds) if workers is not None else map(fn, seeds))
