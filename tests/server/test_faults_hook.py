"""The TEST-ONLY fault hook of the UDP transport (doozer/server/faults.py),
installed by the service when DOOZER_TEST_FAULTS is set."""

from __future__ import annotations

import json

from twisted.internet.task import Clock

from doozer.consensus.diagnostics import transport_state
from doozer.server import faults
from doozer.consensus.messages import Ping
from doozer.consensus.transport import UDPTransport

from transportutil import A, B, FakeDatagramTransport

KEY = b"k" * 32


def make(env: dict, clock: Clock, got: list) -> tuple[UDPTransport, UDPTransport]:
    """Two transports with the hook installed as the service does it."""
    a = UDPTransport(cluster_name="c", cluster_id="cid", node_id="a", deliver=lambda s, m: None, key=KEY, clock=clock)
    b = UDPTransport(cluster_name="c", cluster_id="cid", node_id="b", deliver=lambda s, m: got.append(s), key=KEY, clock=clock)
    for t in (a, b):
        t.fault_file = faults.install(t, clock, environ=env)
    a.makeConnection(FakeDatagramTransport())
    b.makeConnection(FakeDatagramTransport())
    a.set_address("b", B)
    b.set_address("a", A)
    return a, b


def test_unset_costs_nothing() -> None:
    """Without the variable the transport keeps its class's own methods."""
    got: list = []
    a, b = make({}, Clock(), got)
    assert "_write" not in vars(a) and "datagramReceived" not in vars(a)
    assert "fault_dropped" not in a.stats
    assert faults.install(a, None, environ={}) is None
    assert faults.install(a, None, environ={faults.ENV: ""}) is None
    assert "_write" not in vars(a)


def test_drops_both_directions_and_heals(tmp_path) -> None:
    """Listed addresses are cut off both ways; rewriting the file heals."""
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([f"{B[0]}:{B[1]}"]))
    clock = Clock()
    got: list = []
    a, b = make({faults.ENV: str(path)}, clock, got)
    # a sends to B: dropped on a's side (counted, reported as sent).
    assert a.send("b", Ping(1, 2))
    assert a.transport.written == [] and a.stats["fault_dropped"] == 1
    # b (same file, B blocked only matters for b's sends to B, none here)
    # receives from A: A is not listed, so it arrives.
    b.send("a", Ping(1, 2))
    data = b.transport.written.pop()[0]
    a.datagramReceived(data, B)  # a drops what comes from B
    assert a.stats["fault_dropped"] == 2 and a.stats["delivered"] == 0
    # Heal: the file is re-read only after the interval.
    path.write_text("[]")
    assert a.send("b", Ping(1, 2)) and a.transport.written == []
    clock.advance(faults.REREAD_INTERVAL)
    assert a.send("b", Ping(1, 2)) and len(a.transport.written) == 1
    b.datagramReceived(a.transport.written[0][0], A)
    assert got == ["a"]


def test_missing_or_bad_file_drops_nothing(tmp_path) -> None:
    """A missing or malformed file blocks nobody."""
    for content in (None, "not json", '{"a": 1}', '["nohostport", 5, "h:notaport"]'):
        path = tmp_path / "f.json"
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(content)
        f = faults.FaultFile(str(path), lambda: 0.0)
        assert f.rules() == (frozenset(), frozenset())
        assert not f.drops_from(B) and not f.drops_to(B)


def test_parse_addresses() -> None:
    both = {("127.0.0.1", 5), ("::1", 6)}
    assert faults._parse('["127.0.0.1:5", "[::1]:6"]') == (both, both)
    assert faults._parse('["<h:7", ">[::1]:8", "<nope", ">h:x"]') == ({("h", 7)}, {("::1", 8)})


def test_one_way_rules_drop_one_direction_only(tmp_path) -> None:
    """``"<HOST:PORT"``: this node stops hearing that peer, which still
    hears it; ``">HOST:PORT"`` the other way round (one-way losses)."""
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([f"<{B[0]}:{B[1]}"]))
    clock = Clock()
    a, b = make({faults.ENV: str(path)}, clock, [])
    assert a.send("b", Ping(1, 2)) and len(a.transport.written) == 1  # a -> B goes out
    b.send("a", Ping(1, 2))
    a.datagramReceived(b.transport.written.pop()[0], B)  # B -> a is lost
    assert a.stats["fault_dropped"] == 1 and a.stats["delivered"] == 0
    path.write_text(json.dumps([f">{B[0]}:{B[1]}"]))
    clock.advance(faults.REREAD_INTERVAL)
    assert a.send("b", Ping(1, 2)) and len(a.transport.written) == 1  # a -> B is lost
    assert a.stats["fault_dropped"] == 2
    b.send("a", Ping(1, 2))
    a.datagramReceived(b.transport.written.pop()[0], B)  # B -> a arrives
    assert a.stats["delivered"] == 1


def test_debug_state_shows_the_rules_held_and_drops_per_address(tmp_path) -> None:
    """``/_peer/consensus`` shows the rules as the node holds them (a file
    rewritten but not yet re-read still shows the old ones) and what they
    dropped, per address and direction."""
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([f"<{B[0]}:{B[1]}"]))
    clock = Clock()
    a, b = make({faults.ENV: str(path)}, clock, [])
    assert transport_state(a)["faults"] == {"from": [], "to": [], "read_at": None, "dropped": {}}
    b.send("a", Ping(1, 2))
    b.send("a", Ping(1, 2))
    for data, _ in b.transport.written:
        a.datagramReceived(data, B)
    path.write_text("[]")  # healed on disk, not yet re-read
    state = transport_state(a)["faults"]
    assert state == {"from": [f"{B[0]}:{B[1]}"], "to": [], "read_at": 0.0, "dropped": {f"<{B[0]}:{B[1]}": 2}}
    clock.advance(faults.REREAD_INTERVAL)
    a.send("b", Ping(1, 2))
    state = transport_state(a)["faults"]
    assert state["from"] == [] and state["read_at"] == faults.REREAD_INTERVAL
    assert state["dropped"] == {f"<{B[0]}:{B[1]}": 2}


def test_without_the_hook_the_view_has_no_faults() -> None:
    a, _ = make({}, Clock(), [])
    assert "faults" not in transport_state(a)
