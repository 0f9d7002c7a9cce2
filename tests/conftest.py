"""Shared test setup: tests import their helpers (apiutil, sim...) by name,
and a test fails if it logged an unhandled error (pytest lacks trial's check)."""

from __future__ import annotations

import concurrent.futures
import os
import sys
from typing import Iterator, Optional

import pytest
from twisted.logger import globalLogPublisher

sys.path.insert(0, os.path.dirname(__file__))

import seeds  # noqa: E402  (a helper of the tests directory, found through the line above)


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



@pytest.fixture(scope="session")
def seed_workers() -> Iterator[Optional[concurrent.futures.Executor]]:
    """Processes for the simulations' seeds (tests/seeds.py)."""
    with seeds.workers() as pool:
        yield pool
