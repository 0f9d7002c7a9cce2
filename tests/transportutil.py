"""Two UDP transports wired to each other in memory, for the transport's
tests and its diagnostics' (tests/consensus/test_transport.py,
test_diagnostics.py)."""

from __future__ import annotations

from doozer.consensus.transport import UDPTransport

KEY = b"k" * 32
A = ("127.0.0.1", 1001)
B = ("127.0.0.1", 1002)


class FakeDatagramTransport:
    """Records written datagrams instead of sending them."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple]] = []

    def write(self, data: bytes, addr: tuple) -> None:
        self.written.append((data, addr))


def pair(key: bytes | None = KEY, cluster_id: str = "cid") -> tuple:
    """Two connected transports a and b, and what b delivered."""
    got: list = []
    a = UDPTransport(cluster_name="c", cluster_id=cluster_id, node_id="a", deliver=lambda s, m: None, key=key)
    b = UDPTransport(cluster_name="c", cluster_id="cid", node_id="b", deliver=lambda s, m: got.append((s, m)), key=key)
    a.makeConnection(FakeDatagramTransport())
    b.makeConnection(FakeDatagramTransport())
    a.set_address("b", B)
    b.set_address("a", A)
    return a, b, got
