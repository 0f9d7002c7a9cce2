"""Peers' host names (doozer/node/names.py): looked up at start-up, again
when their peer falls silent, off the reactor thread, and never too often."""

from __future__ import annotations

import socket

import pytest
from twisted.internet.task import Clock

from doozer.node.names import MIN_INTERVAL, STALE, NameBook, resolve_host

from namesutil import FakeDNS


def test_resolve_host() -> None:
    assert resolve_host("localhost") == "127.0.0.1"
    assert resolve_host("10.1.2.3") == "10.1.2.3"
    assert resolve_host("::1", socket.AF_INET6) == "::1"
    with pytest.raises(ValueError, match="'nowhere.invalid' does not resolve"):
        resolve_host("nowhere.invalid")


def test_addresses_pass_through_and_known_names_answer_at_once() -> None:
    dns = FakeDNS({})
    book = NameBook(Clock(), dns, known={"a": "10.0.0.1"})
    assert book.lookup(("10.9.9.9", 1)) == ("10.9.9.9", 1)
    assert book.lookup(("a", 2)) == ("10.0.0.1", 2)
    assert dns.asked == []


def test_a_name_never_resolved_is_looked_up_and_answered_once_known() -> None:
    dns = FakeDNS({"b": "10.0.0.2"})
    dns.held = []
    book = NameBook(Clock(), dns)
    assert book.lookup(("b", 1)) is None
    assert book.lookup(("b", 1)) is None  # one look-up at a time per name
    assert dns.asked == ["b"]
    name, d = dns.held.pop()
    d.callback("10.0.0.2")
    assert book.lookup(("b", 1)) == ("10.0.0.2", 1)


def test_a_silent_peer_is_looked_up_again_and_followed_to_its_new_address() -> None:
    """The peer moved (a new DNS record): once it has been silent for STALE
    seconds its name is looked up again, and the new address is used."""
    clock, dns = Clock(), FakeDNS({"b": "10.0.0.2"})
    book = NameBook(clock, dns, known={"b": "10.0.0.2"})
    changes: list[tuple] = []
    book.on_change.append(lambda *change: changes.append(change))
    book.watch("B", ("b", 1), heard=5)
    clock.advance(STALE - 0.5)
    book.watch("B", ("b", 1), heard=5)
    assert dns.asked == []  # not silent long enough
    dns.records["b"] = "10.0.0.9"
    clock.advance(1)
    book.watch("B", ("b", 1), heard=5)
    assert dns.asked == ["b"]
    assert book.lookup(("b", 1)) == ("10.0.0.9", 1)
    assert changes == [("b", "10.0.0.2", "10.0.0.9")]


def test_a_peer_that_answers_is_not_looked_up_again() -> None:
    clock, dns = Clock(), FakeDNS({"b": "10.0.0.2"})
    book = NameBook(clock, dns, known={"b": "10.0.0.2"})
    for heard in range(20):
        book.watch("B", ("b", 1), heard=heard)
        clock.advance(1)
    assert dns.asked == []


def test_look_ups_are_rate_limited_and_a_failure_keeps_the_last_address() -> None:
    clock, dns = Clock(), FakeDNS({})
    book = NameBook(clock, dns, known={"b": "10.0.0.2"})
    for _ in range(100):
        book.silent(("b", 1))
        clock.advance(0.1)
    # 10 s of silence: one look-up per MIN_INTERVAL
    assert len(dns.asked) == int(10 / MIN_INTERVAL)
    assert book.stats["failed"] == len(dns.asked)
    assert book.lookup(("b", 1)) == ("10.0.0.2", 1)


def test_names_kept_are_bounded() -> None:
    """Names come from the store too: a flood of them is not looked up."""
    clock, dns = Clock(), FakeDNS({f"n{i}": "10.0.0.1" for i in range(10)})
    book = NameBook(clock, dns, max_names=3)
    for i in range(10):
        book.lookup((f"n{i}", 1))
    assert len(book.ips) == 3 and book.stats["refused"] == 7


def test_without_a_resolver_only_addresses_answer() -> None:
    book = NameBook(Clock(), None)
    assert book.lookup(("b", 1)) is None and book.lookup(("::1", 1)) == ("::1", 1)


def test_follow_addresses_sends_to_a_silent_peers_new_address() -> None:
    """Node level: member B's /ctl/node/B/addr is the name b:1002. While B
    answers, datagrams go where b resolved at start; once B has been silent
    for STALE seconds b is looked up again, and the next datagram to B goes
    to its new address."""
    from doozer.consensus.messages import Ping
    from doozer.consensus.transport import UDPTransport
    from doozer.node.names import follow_addresses

    from consensus.test_transport import FakeDatagramTransport

    clock, dns = Clock(), FakeDNS({"b": "10.0.0.2"})
    names = NameBook(clock, dns, known={"a": "10.0.0.1", "b": "10.0.0.2"})
    me = UDPTransport(cluster_name="c", cluster_id="cid", node_id="A", deliver=lambda s, m: None)
    me.makeConnection(FakeDatagramTransport())
    them = UDPTransport(cluster_name="c", cluster_id="cid", node_id="B", deliver=lambda s, m: None)
    them.makeConnection(FakeDatagramTransport())
    them.set_address("A", ("10.0.0.1", 1001))
    book = {"A": "a:1001", "B": "b:1002"}

    def chores(seconds: float, b_talks: bool) -> None:
        for _ in range(int(seconds / 0.5)):
            if b_talks:
                them.send("A", Ping(1, 2))
                data, _ = them.transport.written.pop()
                me.datagramReceived(data, ("10.0.0.2", 1002))
            follow_addresses(names, me, book, "A")
            clock.advance(0.5)

    chores(10, b_talks=True)
    assert dns.asked == []  # B answers from where b resolved: no look-up
    me.send("B", Ping(1, 2))
    assert me.transport.written[-1][1] == ("10.0.0.2", 1002)
    dns.records["b"] = "10.0.0.9"  # B moved, and is silent at its old address
    chores(STALE + 1, b_talks=False)
    assert dns.asked == ["b"]
    me.send("B", Ping(1, 3))
    assert me.transport.written[-1][1] == ("10.0.0.9", 1002)


def test_follow_addresses_looks_up_a_peer_heard_from_elsewhere() -> None:
    """A named peer whose datagrams come from another address than its
    name resolved to (it came back elsewhere) is looked up again at once."""
    from doozer.consensus.transport import UDPTransport
    from doozer.consensus.messages import Ping
    from doozer.node.names import follow_addresses

    from consensus.test_transport import FakeDatagramTransport

    clock, dns = Clock(), FakeDNS({"b": "10.0.0.9"})
    names = NameBook(clock, dns, known={"a": "10.0.0.1", "b": "10.0.0.2"})
    me = UDPTransport(cluster_name="c", cluster_id="cid", node_id="A", deliver=lambda s, m: None)
    them = UDPTransport(cluster_name="c", cluster_id="cid", node_id="B", deliver=lambda s, m: None)
    for t in (me, them):
        t.makeConnection(FakeDatagramTransport())
    them.set_address("A", ("10.0.0.1", 1001))
    them.send("A", Ping(1, 2))
    me.datagramReceived(them.transport.written.pop()[0], ("10.0.0.9", 1002))
    follow_addresses(names, me, {"A": "a:1001", "B": "b:1002"}, "A")
    assert dns.asked == ["b"] and me.address_of("B") == ("10.0.0.9", 1002)
