"""The node sends what one pump produced for a peer in one datagram."""

from __future__ import annotations

from typing import Any

from doozer.consensus.messages import Accept, Accepted, Bundle, Ping, Skip
from doozer.testing import single_node


def test_one_pump_sends_one_bundle_per_peer_in_order() -> None:
    """Messages for the same peer are bundled in their order; a peer with a
    single message gets it as is; peers keep the order they first appeared in."""
    node = single_node()
    sent: list[tuple[str, Any]] = []
    node._send = lambda dest, message: sent.append((dest, message))
    m1 = Accept(5, (0, "A"), b"v")
    m2 = Accepted(5, (0, "A"), b"d" * 16)
    m3 = Skip("A", 3, 5)
    m4 = Ping(1, 2)
    node.pump.send_outbox([("B", m1), ("C", m2), ("B", m3), ("B", m4)])
    assert sent == [("B", Bundle((m1, m3, m4))), ("C", m2)]
    sent.clear()
    node.pump.send_outbox([("C", m4)])
    assert sent == [("C", m4)]
    sent.clear()
    node.pump.send_outbox([])
    assert sent == []
