"""What a node notes as things happen, for /metrics (:mod:`doozer.node.stats`):
round trips of ACCEPTs per peer, bounded; write outcomes by code."""

from __future__ import annotations

import pytest

from doozer.consensus.messages import Accept, Accepted, Ping
from doozer.errors import DoozerError
from doozer.node.stats import RoundTrips, WriteStats


def test_a_round_trip_is_from_the_first_send_to_the_first_answer() -> None:
    """A retransmission keeps the first send's time; a second ACCEPTED for
    the same ACCEPT, an answer to another node's ballot, or one never
    asked for counts nothing; only ACCEPTs this node coordinates count."""
    rt = RoundTrips("ME")
    accept = Accept(7, (0, "ME"), b"v")
    rt.sent([("P", accept), ("Q", Ping(1, 1)), ("Q", Accept(8, (1, "OTHER"), b"v"))], 10.0)
    rt.sent([("P", accept)], 10.5)  # retransmitted
    rt.received("P", Accepted(7, (0, "ME"), b"d"), 10.75)
    rt.received("P", Accepted(7, (0, "ME"), b"d"), 11.0)
    rt.received("Q", Accepted(8, (1, "OTHER"), b"d"), 11.0)
    rt.received("Q", Accepted(9, (0, "ME"), b"d"), 11.0)
    assert list(rt.peers) == ["P"]
    assert rt.peers["P"].count == 1 and rt.peers["P"].sum == pytest.approx(0.75)


def test_round_trips_stay_bounded() -> None:
    """ACCEPTs a dead peer never answers are forgotten oldest first, and
    only the peers heard from most recently keep a histogram."""
    rt = RoundTrips("ME", max_open=3, max_peers=2)
    rt.sent([("DEAD", Accept(s, (0, "ME"), b"")) for s in range(10)], 0.0)
    assert len(rt._sent) == 3
    for n, peer in enumerate(("A", "B", "C")):
        rt.sent([(peer, Accept(100 + n, (0, "ME"), b""))], 1.0)
        rt.received(peer, Accepted(100 + n, (0, "ME"), b""), 1.5)
    assert list(rt.peers) == ["B", "C"]


def test_write_outcomes_by_code() -> None:
    stats = WriteStats()
    stats.commit(0.004)
    stats.fail(DoozerError("REV_MISMATCH"))
    stats.fail(DoozerError("REV_MISMATCH"))
    stats.fail(DoozerError("UNAVAILABLE"))
    assert stats.committed == 1 and stats.latency.count == 1
    assert stats.failed == {"rev_mismatch": 2, "unavailable": 1}
