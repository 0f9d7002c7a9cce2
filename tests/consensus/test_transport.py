"""The UDP transport: framing, authentication, and dropping bad datagrams."""

from __future__ import annotations

import random

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from doozer.consensus import messages
from doozer.consensus.messages import Accept, Ping, Promise
from doozer.consensus.transport import MAX_DATAGRAM, UDPTransport
from transportutil import KEY, A, B, FakeDatagramTransport, pair


class FullBuffer(FakeDatagramTransport):
    """A socket whose send buffer is full."""

    def write(self, data: bytes, addr: tuple) -> None:
        raise BlockingIOError(11, "EAGAIN")


def through(a: UDPTransport, b: UDPTransport) -> None:
    """Hand every datagram a wrote to b."""
    for data, _ in a.transport.written:
        b.datagramReceived(data, A)
    a.transport.written.clear()


def test_round_trip_authenticated() -> None:
    """A message sent with the cluster key arrives intact with its sender."""
    a, b, got = pair()
    msg = Accept(7, (0, "a"), b"value")
    assert a.send("b", msg)
    through(a, b)
    assert got == [("a", msg)]
    assert b.stats["delivered"] == 1


def test_round_trip_without_key() -> None:
    """Without a cluster key frames carry no tag and still arrive."""
    a, b, got = pair(key=None)
    a.send("b", Promise((1, "a"), ((3, None, None), (4, (0, "b"), b"x"))))
    through(a, b)
    assert got[0][1].entries[1] == (4, (0, "b"), b"x")


def test_wrong_key_is_unauthenticated() -> None:
    """A datagram sealed with another key is counted and not delivered."""
    a, b, got = pair()
    stranger = UDPTransport(cluster_name="c", cluster_id="cid", node_id="a",
                            deliver=lambda s, m: None, key=b"other" * 7)
    stranger.makeConnection(FakeDatagramTransport())
    stranger.set_address("b", B)
    stranger.send("b", Ping(1, 1))
    through(stranger, b)
    assert got == [] and b.stats["unauthenticated"] == 1


def test_a_datagram_for_one_node_opens_on_no_other() -> None:
    """SPEC §12: the seal binds the destination, so a datagram captured on
    its way to b is refused by c (same key, same cluster) and by a
    restarted b (a new process has a new id) [cross-node replays were
    accepted with the HMAC of the first builds]."""
    a, b, got = pair()
    c_got: list = []
    c = UDPTransport(cluster_name="c", cluster_id="cid", node_id="c",
                     deliver=lambda s, m: c_got.append(s), key=KEY)
    c.makeConnection(FakeDatagramTransport())
    a.send("b", Accept(7, (0, "a"), b"v"))
    data = a.transport.written[0][0]
    c.datagramReceived(data, A)
    assert c_got == [] and c.stats["unauthenticated"] == 1
    restarted = UDPTransport(cluster_name="c", cluster_id="cid", node_id="b2",
                             deliver=lambda s, m: c_got.append(s), key=KEY)
    restarted.datagramReceived(data, A)
    assert c_got == [] and restarted.stats["unauthenticated"] == 1
    b.datagramReceived(data, A)
    assert [s for s, _ in got] == ["a"]


def test_only_discovery_travels_to_an_address() -> None:
    """A datagram sealed for an address rather than a node opens anywhere,
    so only Hello and Status may travel that way; a consensus message
    sealed so is refused."""
    from doozer.consensus.seal import Seal

    a, b, got = pair()
    body = messages.pack("c", "cid", "a", 99, Ping(1, 1))
    forged = Seal([KEY]).seal(body, sender="a", incarnation=a.incarnation, counter=99, destination=None)
    b.datagramReceived(forged, A)
    assert got == [] and b.stats["misaddressed"] == 1
    a.send_to(B, messages.Hello("127.0.0.1:1001", "c"))
    through(a, b)
    assert [type(m) for _, m in got] == [messages.Hello]


def test_keys_roll_the_first_seals_every_one_opens() -> None:
    """A key file may hold several keys: a node seals with its first and
    opens with any, so a cluster moves to a new key by a rolling restart
    (new key added second everywhere, then moved first, then the old one
    dropped)."""
    old, new = b"o" * 32, b"n" * 32
    got: list = []
    both = UDPTransport(cluster_name="c", cluster_id="cid", node_id="b", deliver=lambda s, m: got.append(s), key=[new, old])
    only_old = UDPTransport(cluster_name="c", cluster_id="cid", node_id="a", deliver=lambda s, m: got.append(s), key=[old])
    for t in (both, only_old):
        t.makeConnection(FakeDatagramTransport())
    both.set_address("a", A)
    only_old.set_address("b", B)
    only_old.send("b", Ping(1, 1))
    through(only_old, both)
    assert got == ["a"]
    both.send("a", Ping(1, 1))  # sealed with the new key: the old-only node cannot open it
    through(both, only_old)
    assert got == ["a"] and only_old.stats["unauthenticated"] == 1


def test_sealed_and_unsealed_do_not_mix() -> None:
    """A node with a key refuses unsealed frames, and one without a key
    refuses sealed ones (it cannot check them)."""
    a, _, _ = pair(key=None)
    _, b, got = pair()
    a.send("b", Ping(1, 1))
    through(a, b)
    assert got == [] and b.stats["unauthenticated"] == 1
    k, _, _ = pair()
    _, plain, plain_got = pair(key=None)
    k.send("b", Ping(1, 1))
    through(k, plain)
    assert plain_got == [] and plain.stats["unauthenticated"] == 1


def test_tampered_body_is_unauthenticated() -> None:
    """Flipping one bit of the sealed frame fails the AEAD check."""
    a, b, got = pair()
    a.send("b", Ping(1, 1))
    data = bytearray(a.transport.written[0][0])
    data[-1] ^= 1
    b.datagramReceived(bytes(data), A)
    assert got == [] and b.stats["unauthenticated"] == 1


def test_foreign_cluster_id_dropped() -> None:
    """A datagram of an earlier incarnation (another cluster id) is dropped."""
    a, b, got = pair(cluster_id="old")
    a.send("b", Ping(1, 1))
    through(a, b)
    assert got == [] and b.stats["foreign_cluster"] == 1


def test_replay_dropped() -> None:
    """The same datagram received twice is delivered once."""
    a, b, got = pair()
    a.send("b", Ping(1, 1))
    data = a.transport.written[0][0]
    b.datagramReceived(data, A)
    b.datagramReceived(data, A)
    assert len(got) == 1 and b.stats["replayed"] == 1


def test_reordered_datagrams_delivered() -> None:
    """Datagrams arriving out of order within the window are all delivered."""
    a, b, got = pair()
    for i in range(5):
        a.send("b", Ping(i, i))
    for data, _ in reversed(a.transport.written):
        b.datagramReceived(data, A)
    assert len(got) == 5 and b.stats["replayed"] == 0


def test_counter_starts_from_clock() -> None:
    """A transport given a clock numbers datagrams above earlier processes'."""
    clock = Clock()
    clock.advance(1000.0)
    t = UDPTransport(cluster_name="c", cluster_id="i", node_id="a", deliver=lambda s, m: None, clock=clock)
    env = messages.unpack(t.frame(Ping(0, 0))[1:])
    assert env.counter > 1000 * 1_000_000


def test_oversized_in_and_out() -> None:
    """Datagrams over the limit are neither sent nor parsed."""
    a, b, got = pair()
    assert not a.send("b", Accept(1, (0, "a"), b"x" * MAX_DATAGRAM))
    assert a.stats["send_oversized"] == 1
    b.datagramReceived(b"\x01" + b"x" * MAX_DATAGRAM, A)
    assert b.stats["oversized"] == 1 and got == []


def test_truncated_datagram_counted() -> None:
    """A datagram that filled the receive buffer was truncated: dropped as such."""
    a, b, got = pair()
    b.transport.maxPacketSize = 100
    a.send("b", Accept(1, (0, "a"), b"v" * 200))
    data = a.transport.written[0][0][:100]
    b.datagramReceived(data, A)
    assert got == [] and b.stats["truncated"] == 1


def test_unknown_destination_counted() -> None:
    """Sending to a node without an address is counted, not raised."""
    a, _, _ = pair()
    assert not a.send("nobody", Ping(0, 0))
    assert a.stats["no_address"] == 1


def test_full_socket_buffer_counted() -> None:
    """A send the kernel refuses is counted and dropped (the core retransmits)."""
    a = UDPTransport(cluster_name="c", cluster_id="i", node_id="a", deliver=lambda s, m: None)
    a.makeConnection(FullBuffer())
    a.set_address("b", B)
    assert not a.send("b", Ping(0, 0))
    assert a.stats["send_errors"] == 1


def test_queue_before_listening_is_bounded() -> None:
    """Before listening, sends queue up to a bound and go out on start."""
    a = UDPTransport(cluster_name="c", cluster_id="i", node_id="a", deliver=lambda s, m: None, max_queued=3)
    a.set_address("b", B)
    for i in range(5):
        a.send("b", Ping(i, i))
    assert a.stats["queue_dropped"] == 2
    a.makeConnection(FakeDatagramTransport())
    assert len(a.transport.written) == 3


def test_learns_sender_address() -> None:
    """A valid datagram from an unknown node teaches where to answer it."""
    a, b, got = pair()
    c = UDPTransport(cluster_name="c", cluster_id="cid", node_id="c", deliver=lambda s, m: None, key=KEY)
    c.makeConnection(FakeDatagramTransport())
    c.set_address("b", B)
    c.send("b", Ping(0, 0))
    b.datagramReceived(c.transport.written[0][0], ("10.0.0.3", 9))
    assert b.address_of("c") == ("10.0.0.3", 9)


def test_looped_datagram_dropped() -> None:
    """A datagram claiming to come from this node itself is dropped."""
    a, b, got = pair()
    b.set_address("b", B)
    b.send("b", Ping(0, 0))
    b.datagramReceived(b.transport.written[0][0], B)
    assert got == [] and b.stats["looped"] == 1


def test_bundle_delivers_each_message_in_order() -> None:
    """A Bundle is one datagram; the receiver delivers its messages one by one,
    in order, as if they had come back to back."""
    a, b, got = pair()
    inner = (Accept(3, (0, "a"), b"v"), messages.Accepted(3, (0, "a"), b"d" * 16), Ping(2, 3))
    assert a.send("b", messages.Bundle(inner))
    assert len(a.transport.written) == 1
    through(a, b)
    assert got == [("a", m) for m in inner]
    assert b.stats["delivered"] == 1 and b.stats["received"] == 1


def test_bundle_too_large_for_one_datagram_is_split() -> None:
    """A bundle over the datagram limit goes out as several datagrams, each
    under the limit, delivering every message once and in order; a single
    message too large alone is still refused."""
    a, b, got = pair()
    inner = tuple(Accept(s, (0, "a"), bytes([s]) * 20_000) for s in range(1, 8))
    assert a.send("b", messages.Bundle(inner))
    sizes = [len(d) for d, _ in a.transport.written]
    assert len(sizes) > 1 and max(sizes) <= MAX_DATAGRAM
    through(a, b)
    assert [m for _, m in got] == list(inner)
    assert a.stats["send_oversized"] == 0
    assert not a.send("b", messages.Bundle((Ping(1, 1), Accept(9, (0, "a"), b"x" * 70_000))))
    assert a.stats["send_oversized"] == 1


def test_bundle_of_more_messages_than_a_receiver_takes_is_split() -> None:
    """Receivers refuse a bundle of more than MAX_BUNDLE messages, however
    small. A turn that answered a flood of stale messages with thousands of
    8-byte LEARNs made such a bundle, under the byte limit: the peer dropped
    the whole datagram, with the PING in it, every time the turn repeated,
    and so heard nothing at all from a live member."""
    from doozer.consensus.instance import NOOP

    a, b, got = pair()
    inner = tuple(messages.Learn(s, NOOP) for s in range(1, messages.MAX_BUNDLE + 100)) + (Ping(9, 9),)
    assert len(messages.encode(messages.Bundle(inner))) < MAX_DATAGRAM  # bytes alone would not split it
    assert a.send("b", messages.Bundle(inner))
    assert len(a.transport.written) == 2
    through(a, b)
    assert [m for _, m in got] == list(inner)
    assert b.stats["malformed"] == 0


def test_ping_carries_suspects() -> None:
    a, b, got = pair()
    a.send("b", Ping(5, 6, ("X", "Y")))
    through(a, b)
    assert got == [("a", Ping(5, 6, ("X", "Y")))]


@pytest.mark.parametrize(
    "fields",
    [
        (1, 1),  # no suspects (a build before them)
        (1, 1, (1,)),  # not ids
        (1, 1, ("",)),
        (1, 1, ("x" * 257,)),
        (1, 1, tuple(f"n{i}" for i in range(messages.MAX_SUSPECTS + 1))),
        (1, 1, "XY"),  # not a list
    ],
)
def test_ping_with_bad_suspects_is_malformed(fields: tuple) -> None:
    import msgpack

    a, b, got = pair(key=None)
    body = msgpack.packb(("c", "cid", "a", 1, 9, *fields), use_bin_type=True)
    b.datagramReceived(b"\x01" + body, A)
    assert got == [] and b.stats["malformed"] == 1


@pytest.mark.parametrize(
    "entries",
    [
        (),  # empty
        ((14, ((9, 1, 1),)),),  # a bundle in a bundle
        ((12, "127.0.0.1:1", "c"),),  # discovery inside
        ((9, 1),),  # a malformed message inside
        ((99, 1),),  # an unknown code inside
        (5,),  # not a message
    ],
)
def test_malformed_bundle_dropped(entries: tuple) -> None:
    """Bundles that are empty, nested, carry discovery or bad messages are
    malformed: nothing of them is delivered."""
    import msgpack

    a, b, got = pair(key=None)
    body = msgpack.packb(("c", "cid", "a", 1, 14, entries), use_bin_type=True)
    b.datagramReceived(b"\x01" + body, A)
    assert got == [] and b.stats["malformed"] == 1


@pytest_twisted.ensureDeferred
async def test_listen_asks_for_large_socket_buffers() -> None:
    """listen() enlarges the kernel buffers (as far as rmem_max allows), so a
    node busy for a few milliseconds does not lose datagrams."""
    import socket

    from twisted.internet import reactor

    from doozer.consensus.transport import SOCKET_BUFFER

    try:
        with open("/proc/sys/net/core/rmem_max") as f:
            rmem_max = int(f.read())
    except OSError:
        pytest.skip("no /proc/sys/net/core/rmem_max")
    a = UDPTransport(cluster_name="c", cluster_id="cid", node_id="a", deliver=lambda s, m: None)
    port = a.listen(reactor, 0, "127.0.0.1")
    try:
        got = port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert got >= min(SOCKET_BUFFER, rmem_max)  # Linux reports twice what it grants
    finally:
        await port.stopListening()


def _mutate(rng: random.Random, data: bytes) -> bytes:
    kind = rng.randrange(5)
    buf = bytearray(data)
    if kind == 0 and buf:
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif kind == 1:
        del buf[rng.randrange(len(buf) + 1) :]
    elif kind == 2:
        buf += rng.randbytes(rng.randint(1, 40))
    elif kind == 3:
        return rng.randbytes(rng.randint(0, 200))
    else:
        return b"\x01" + rng.randbytes(rng.randint(0, 200))
    if bytes(buf) == data:  # a mutation must change something
        buf[-1] ^= 0x40
    return bytes(buf)


SAMPLES = [
    Accept(5, (0, "a"), b"v" * 30),
    Promise((2, "a"), ((5, (1, "b"), b"x"), (6, None, None))),
    Ping(3, 4),
    messages.Skip("a", 3, 9),
    messages.Forward((b"i1", b"i2")),
    messages.Bundle((Accept(6, (0, "a"), b"w" * 20), messages.Accepted(6, (0, "a"), b"d" * 16),
                     messages.Skip("a", 1, 6))),
]


@pytest.mark.parametrize("key", [KEY, None])
def test_fuzz_never_raises_and_counts_everything(key: bytes | None) -> None:
    """Thousands of random and mutated datagrams are all counted, none raises,
    and with a key none is delivered."""
    rng = random.Random(99)
    a, b, got = pair(key=key)
    for msg in SAMPLES:
        a.send("b", msg)
    originals = [d for d, _ in a.transport.written]
    n = 5000
    for _ in range(n):
        b.datagramReceived(_mutate(rng, rng.choice(originals)), A)
    drops = sum(v for k, v in b.stats.items() if k not in ("received", "delivered", "sent"))
    assert b.stats["received"] == n
    assert b.stats["delivered"] + drops == n
    if key is not None:
        assert got == [] and b.stats["delivered"] == 0
    for _, msg in got:
        # whatever got through is a well-formed message of a known type
        assert type(msg) in messages.CODES


def test_fuzz_leaves_sequencer_state_unchanged() -> None:
    """Mutated datagrams (with a key) change nothing in the sequencer fed by b."""
    from doozer.consensus.sequencer import Sequencer

    seq = Sequencer("b", genesis=["a", "b", "c"], rng=random.Random(1))
    before = seq.stats()
    rng = random.Random(5)
    a, b, _ = pair()
    b.deliver = lambda s, m: seq.receive(s, m, 0.0)
    for msg in SAMPLES:
        a.send("b", msg)
    originals = [d for d, _ in a.transport.written]
    for _ in range(3000):
        b.datagramReceived(_mutate(rng, rng.choice(originals)), A)
    assert seq.stats() == before
    assert seq.take_outbox() == []


@pytest_twisted.ensureDeferred
async def test_real_sockets_on_loopback() -> None:
    """Two transports listening on 127.0.0.1 exchange a large authenticated message."""
    from twisted.internet import defer, reactor

    arrived: defer.Deferred = defer.Deferred()
    a = UDPTransport(cluster_name="c", cluster_id="cid", node_id="a", deliver=lambda s, m: None, key=KEY)
    b = UDPTransport(
        cluster_name="c", cluster_id="cid", node_id="b", deliver=lambda s, m: arrived.callback((s, m)), key=KEY
    )
    port_a = a.listen(reactor, 0, "127.0.0.1")
    port_b = b.listen(reactor, 0, "127.0.0.1")
    try:
        a.set_address("b", ("127.0.0.1", port_b.getHost().port))
        big = Accept(1, (0, "a"), b"v" * 60_000)  # over Twisted's default 8 KiB buffer
        a.send("b", big)
        arrived.addTimeout(5, reactor)
        assert await arrived == ("a", big)
    finally:
        await port_a.stopListening()
        await port_b.stopListening()


def test_counts_and_sources_of_each_sender() -> None:
    """What the service watches to look a named peer up again: how many of
    its datagrams were taken (silent when it stops moving) and where the
    last came from (moved when it is not where its name resolved to);
    replays count for neither."""
    a, b, got = pair()
    assert b.taken_from("a") == 0 and b.source_of("a") is None
    a.send("b", Ping(1, 2))
    a.send("b", Ping(1, 3))
    frames = [data for data, _ in a.transport.written]
    b.datagramReceived(frames[0], A)
    b.datagramReceived(frames[1], ("::1", 1001, 0, 0))
    assert b.taken_from("a") == 2 and b.source_of("a") == ("::1", 1001)
    b.datagramReceived(frames[1], ("10.9.9.9", 1))  # a replay, from anywhere
    assert b.taken_from("a") == 2 and b.source_of("a") == ("::1", 1001)
