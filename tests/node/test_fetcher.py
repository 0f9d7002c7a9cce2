"""Copying snapshots when left behind (doozer/node/fetcher.py)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from doozer.node.fetcher import FIRST_BACKOFF, MAX_BACKOFF, SnapshotFetcher


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
    assert fetcher._retry_at > clock.seconds() and not fetcher.fetching
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


def test_failed_fetches_do_not_push_the_next_try_back() -> None:
    """A node cut off for a while (or picking a dead member still in the
    CAL) fails fetch after fetch; those cost no copy, so the wait after each
    stays FIRST_BACKOFF and the node copies state from a live source within
    about a second of reaching one, not after a back-off of many seconds
    grown while it could reach none (its quorum, and the lease expiries of
    SPEC §9 G2, waited on it: found by tests/leasesim.py)."""
    clock = Clock()
    node = FakeNode(clock, installs=[True])
    reachable = [False]
    tries: list[float] = []

    def fetch(addr: Any) -> "defer.Deferred[Any]":
        tries.append(clock.seconds())
        return defer.succeed("SNAP") if reachable[0] else defer.fail(ConnectionError("timed out"))

    fetcher = SnapshotFetcher(node, fetch, lambda peer: ("h", 1), clock)
    run(fetcher, clock, 20)
    assert len(tries) >= 15 and fetcher._backoff == 0
    healed = clock.seconds()
    reachable[0] = True
    run(fetcher, clock, 2 * FIRST_BACKOFF)
    assert tries[-1] - healed <= FIRST_BACKOFF
    assert node._installs == []  # installed
