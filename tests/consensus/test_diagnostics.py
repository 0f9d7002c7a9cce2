"""What /_peer/consensus shows of the UDP transport
(:func:`doozer.consensus.diagnostics.transport_state`): drops, addresses,
each sender's datagrams taken and refused, and where datagrams went."""

from __future__ import annotations

from doozer.consensus.diagnostics import transport_state
from doozer.consensus.messages import Ping
from transportutil import pair


def test_debug_state_shows_drops_and_where_peers_are_sent() -> None:
    """/_peer/consensus shows this: a peer that looks silent is explained by
    a drop counter that grows, or by having no address at all."""
    a, b, _ = pair()
    a.send("b", Ping(0, 0))
    data = a.transport.written[0][0]
    b.datagramReceived(data, ("10.0.0.1", 7))
    b.datagramReceived(data, ("10.0.0.1", 7))
    state = transport_state(b)
    assert state["stats"]["delivered"] == 1 and state["stats"]["replayed"] == 1
    assert state["addresses"] == {"a": "127.0.0.1:1001"} and state["learned"] == {}
    assert state["cluster_id"] == "cid"


def test_debug_state_tells_each_senders_datagrams_taken_and_refused() -> None:
    """Per sender: datagrams taken, refused as replays, and the highest
    counter taken, to compare with the sender's own ``counter``: a peer
    whose datagrams stop arriving, or arrive and are refused, shows here."""
    a, b, _ = pair()
    a.send("b", Ping(0, 0))
    a.send("b", Ping(1, 1))
    first, second = (w[0] for w in a.transport.written)
    b.datagramReceived(second, ("10.0.0.1", 7))
    b.datagramReceived(first, ("10.0.0.1", 7))  # late, but within the window
    b.datagramReceived(first, ("10.0.0.1", 7))  # a replay
    state = transport_state(b)
    assert state["senders"] == {"a": {"taken": 2, "replayed": 1, "highest": transport_state(a)["counter"]}}
    assert state["stats"]["replayed"] == 1
    assert transport_state(a)["sent_to"] == {"127.0.0.1:1002": 2}


def test_datagrams_written_are_counted_per_address_for_a_bounded_number() -> None:
    a, _, _ = pair()
    a.max_peers = 2
    for port in (1, 2, 3, 3):
        a.send_to(("127.0.0.1", port), Ping(0, 0), "b")
    assert transport_state(a)["sent_to"] == {"127.0.0.1:2": 1, "127.0.0.1:3": 2}
