"""Copying snapshots when left behind (doozer/node/fetcher.py)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from doozer.node.fetcher import MAX_BACKOFF, SnapshotFetcher


class FakeNode:
    """Just what the fetcher reads of a node."""

    def __init__(self, clock: Clock, installs: list[bool]) -> None:
        self.id = "ME"
        self.clock = clock
        self.rng = random.Random(0)
        self.store = SimpleNamespace(cal=lambda: ["ME", "B", "C"])
        self.sequencer = SimpleNamespace(snapshot_needed=True, heard_lately=lambda m, now: True)
        self._installs = installs

    def install(self, snap: Any) -> bool:
        return self._installs.pop(0) if self._installs else False


def run(fetcher: SnapshotFetcher, clock: Clock, seconds: float) -> None:
    for _ in range(int(seconds / 0.5)):
        fetcher.chores()
        clock.advance(0.5)


def test_a_snapshot_not_ahead_is_not_fetched_again_every_round() -> None:
    """Issue 15 (suspected, now shown): an install refused because the
    snapshot was not ahead of the node left ``snapshot_needed`` set, and
    the node copied a whole store from a peer every round of chores (every
    0.5 s). Now each try that did not help doubles the wait, up to 30 s."""
    clock = Clock()
    node = FakeNode(clock, installs=[])
    fetches: list[Any] = []

    def fetch(addr: Any) -> "defer.Deferred[Any]":
        fetches.append(addr)
        return defer.succeed("SNAP")

    fetcher = SnapshotFetcher(node, fetch, lambda peer: ("127.0.0.1", 1), clock)
    run(fetcher, clock, 60)
    assert 5 <= len(fetches) <= 8  # 0.5, 1, 2, 4, 8, 16, 30 s apart; not 120
    assert fetcher._backoff == MAX_BACKOFF


def test_a_failed_fetch_backs_off_and_a_good_install_resets() -> None:
    """A fetch that fails waits too; an install that worked starts afresh."""
    clock = Clock()
    node = FakeNode(clock, installs=[True, True])
    outcomes = [defer.fail(ConnectionError("refused")), defer.succeed("SNAP"), defer.succeed("SNAP")]
    fetcher = SnapshotFetcher(node, lambda addr: outcomes.pop(0), lambda peer: ("h", 1), clock)
    fetcher.chores()
    assert fetcher._backoff > 0 and not fetcher.fetching
    run(fetcher, clock, 1.0)
    assert fetcher._backoff == 0  # the install worked
    fetcher.chores()
    assert outcomes == []


def test_no_fetch_without_need_or_source() -> None:
    """Nothing is fetched while the sequencer does not ask, nor without a
    known address for any other member."""
    clock = Clock()
    node = FakeNode(clock, installs=[])
    calls: list[Any] = []
    fetcher = SnapshotFetcher(node, lambda addr: calls.append(addr), lambda peer: None, clock)
    run(fetcher, clock, 5)
    node.sequencer.snapshot_needed = False
    fetcher.address_of = lambda peer: ("h", 1)
    run(fetcher, clock, 5)
    assert calls == []
