"""Finding the cluster at start-up: :func:`doozer.node.discovery.decide` and
:class:`doozer.node.discovery.Discovery` on a Clock with a fake network."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from doozer.node.discovery import HELLO_INTERVAL, STATUS_TTL, Discovery, decide
from doozer.node.peers import Peers
from doozer.consensus.messages import NO_CLUSTER, Hello, Status

A = ("127.0.0.1", 1001)
B = ("127.0.0.1", 1002)
C = ("127.0.0.1", 1003)


def free(addr: tuple, name: str = "local") -> Status:
    return Status(f"{addr[0]}:{addr[1]}", name, NO_CLUSTER, False, 0)


def live(addr: tuple, name: str = "local", member: bool = True) -> Status:
    return Status(f"{addr[0]}:{addr[1]}", name, "CID", member, 7)


@pytest.mark.parametrize(
    "me, peers, statuses, expected",
    [
        # every peer answered "in no cluster" and we are the lowest: start
        (A, [B, C], {B: free(B), C: free(C)}, ("start", None)),
        # ... but not when we are not the lowest
        (B, [A, C], {A: free(A), C: free(C)}, ("wait", None)),
        # a silent peer: never start (it may be in a live cluster)
        (A, [B, C], {B: free(B)}, ("wait", None)),
        (A, [B, C], {}, ("wait", None)),
        # any peer in a live cluster of our name: attach to it, lowest or not
        (A, [B, C], {B: free(B), C: live(C)}, ("attach", C)),
        (B, [A, C], {A: live(A, member=False)}, ("attach", A)),
        # the first live one in --peers order wins
        (A, [B, C], {B: live(B), C: live(C)}, ("attach", B)),
        # a cluster of another name: never attach, never start
        (A, [B], {B: live(B, name="other")}, ("wait", None)),
        (A, [B], {B: free(B, name="other")}, ("wait", None)),
        (A, [B, C], {B: live(B, name="other"), C: live(C)}, ("attach", C)),
        # no peers at all (all were our own address): start
        (A, [], {}, ("start", None)),
    ],
)
def test_decide(me, peers, statuses, expected) -> None:
    assert decide(me, "local", peers, statuses) == expected


class FakeNode:
    """What Discovery needs of a Node."""

    def __init__(self, addr: str = "127.0.0.1:1001", cluster: str = "local") -> None:
        self.id = "ME"
        self.addr = addr
        self.cluster = cluster
        self.cluster_id: Optional[str] = None
        self.running = False
        self.member = False
        self.applied_seqn = 0
        self.peers = Peers(self)  # where Discovery registers its handlers
        self.genesis: list[int] = []
        self.installed: list[Any] = []

    def start_genesis(self, empty_slots: int = 0) -> None:
        self.genesis.append(empty_slots)
        self.running, self.member, self.cluster_id = True, True, "NEW"

    def install(self, snap: Any) -> bool:
        self.installed.append(snap)
        self.running, self.cluster_id = True, "CID"
        return True


class Net:
    """Records what Discovery sends; hands out fetch Deferreds."""

    def __init__(self) -> None:
        self.sent: list[tuple[tuple, Any]] = []
        self.fetches: list[tuple[tuple, defer.Deferred]] = []

    def send_to(self, addr: tuple, message: Any) -> bool:
        self.sent.append((addr, message))
        return True

    def fetch(self, addr: tuple) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.fetches.append((addr, d))
        return d

    def hellos(self) -> list[tuple]:
        out = [a for a, m in self.sent if isinstance(m, Hello)]
        self.sent.clear()
        return out


def discovery(peers: list, addr: str = "127.0.0.1:1001", cluster: str = "local"):
    clock, net, node = Clock(), Net(), FakeNode(addr, cluster)
    d = Discovery(node, peers, net.send_to, net.fetch, clock)
    return d, node, net, clock


def answer(d: Discovery, status: Status) -> None:
    d.node.peers.discovery_handlers[Status]("peer-id", status, ("127.0.0.1", 9))


def test_without_peers_starts_a_one_member_cluster_at_once() -> None:
    d, node, net, clock = discovery([])
    d.start()
    assert node.genesis == [0] and net.sent == []


def test_own_address_in_peers_is_ignored() -> None:
    d, node, net, clock = discovery([A])
    d.start()
    assert node.genesis == [0]


def test_lowest_address_starts_once_every_peer_answered_free() -> None:
    d, node, net, clock = discovery([B, C])
    d.start()
    assert sorted(net.hellos()) == [B, C]
    answer(d, free(B))
    clock.advance(HELLO_INTERVAL)
    assert node.genesis == [] and sorted(net.hellos()) == [B, C]
    answer(d, free(C))
    clock.advance(HELLO_INTERVAL)
    assert node.genesis == [2]  # one free slot per peer
    clock.advance(10 * HELLO_INTERVAL)
    assert net.hellos() == [] and not clock.getDelayedCalls()


def test_stale_answers_do_not_count() -> None:
    """A peer that answered "free" long ago may have started since: ask again."""
    d, node, net, clock = discovery([B, C])
    d.start()
    answer(d, free(B))
    clock.advance(STATUS_TTL + 1)
    answer(d, free(C))
    clock.advance(HELLO_INTERVAL)
    assert node.genesis == []


def test_attaches_by_fetching_a_snapshot_and_retries_after_a_failure() -> None:
    d, node, net, clock = discovery([A, C], addr="127.0.0.1:1002")
    d.start()
    answer(d, live(C))
    clock.advance(HELLO_INTERVAL)
    assert [a for a, _ in net.fetches] == [C]
    # One fetch at a time, however many rounds pass.
    answer(d, live(C))
    clock.advance(HELLO_INTERVAL)
    assert len(net.fetches) == 1
    net.fetches[0][1].errback(RuntimeError("refused"))
    answer(d, live(C))
    clock.advance(HELLO_INTERVAL)
    assert len(net.fetches) == 2
    net.fetches[1][1].callback("SNAP")
    assert node.installed == ["SNAP"]
    clock.advance(10 * HELLO_INTERVAL)
    assert len(net.fetches) == 2 and not clock.getDelayedCalls()


def test_never_attaches_to_another_cluster_and_says_so() -> None:
    from twisted.logger import globalLogPublisher

    lines: list[str] = []

    def observer(event: dict) -> None:
        from twisted.logger import formatEvent

        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    try:
        d, node, net, clock = discovery([B])
        d.start()
        for _ in range(20):
            answer(d, live(B, name="other"))
            clock.advance(HELLO_INTERVAL)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert node.genesis == [] and net.fetches == []
    assert any("of another cluster: 127.0.0.1:1002 (cluster 'other')" in x for x in lines), lines


def test_answers_hello_with_its_state_whatever_it_is() -> None:
    d, node, net, clock = discovery([B])
    node.peers.discovery_handlers[Hello]("x", Hello("127.0.0.1:1003", "other"), C)
    assert net.sent == [(C, Status("127.0.0.1:1001", "local", NO_CLUSTER, False, 0))]
    net.sent.clear()
    node.running, node.member, node.cluster_id, node.applied_seqn = True, True, "CID", 9
    node.peers.discovery_handlers[Hello]("x", Hello("127.0.0.1:1003", "local"), C)
    assert net.sent == [(C, Status("127.0.0.1:1001", "local", "CID", True, 9))]


def test_status_goes_only_to_where_the_hello_came_from() -> None:
    """SPEC §12: a discovery reply goes to the address the request came
    from, never to one written inside it [a Hello naming a third party
    made every node send that party a Status: a reflector]."""
    d, node, net, clock = discovery([B])
    node.peers.discovery_handlers[Hello]("x", Hello("10.9.9.9:53", "local"), C)
    assert [addr for addr, _ in net.sent] == [C]


def test_stop_cancels_the_rounds() -> None:
    d, node, net, clock = discovery([B])
    d.start()
    d.stop()
    assert not clock.getDelayedCalls()


def test_a_fetch_that_raises_at_once_is_retried_not_fatal() -> None:
    """Regression: an exception raised by fetch() itself (not a failed
    Deferred) escaped the round, which was then never scheduled again."""
    d, node, net, clock = discovery([B], addr="127.0.0.1:1001")
    calls: list = []

    def broken(addr: tuple) -> defer.Deferred:
        calls.append(addr)
        raise AttributeError("bug in the TLS client")

    d.fetch = broken
    d.start()
    for _ in range(3):
        answer(d, live(B))
        clock.advance(HELLO_INTERVAL)
    assert calls == [B, B, B]
    assert clock.getDelayedCalls()


def test_failing_fetches_are_logged_once_per_interval() -> None:
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []

    def observer(event: dict) -> None:
        lines.append(formatEvent(event))

    d, node, net, clock = discovery([B], addr="127.0.0.1:1001")
    d.fetch = lambda addr: defer.fail(RuntimeError("answered 401"))
    globalLogPublisher.addObserver(observer)
    try:
        d.start()
        for _ in range(20):  # 10 s of rounds, a fetch in each
            answer(d, live(B))
            clock.advance(HELLO_INTERVAL)
    finally:
        globalLogPublisher.removeObserver(observer)
    warnings = [x for x in lines if "could not copy the cluster's state" in x]
    assert 2 <= len(warnings) <= 3, lines
    assert "answered 401; will retry" in warnings[0]


def named_discovery(peers: list, records: dict, addr: str = "a:1001"):
    """Discovery whose peers are host names, resolved by a fake resolver."""
    from doozer.node.names import NameBook
    from namesutil import FakeDNS

    clock, net, node = Clock(), Net(), FakeNode(addr)
    dns = FakeDNS(records)
    names = NameBook(clock, dns, known=dict(records))
    d = Discovery(node, peers, net.send_to, net.fetch, clock, names)
    return d, node, net, clock, dns


def test_named_peers_get_hellos_at_their_address_and_answers_match_them() -> None:
    """A Status names the peer's own --listen, which need not be how our
    --peers names it: an answer from a peer's address counts for that entry."""
    d, node, net, clock, dns = named_discovery(
        [("b", 1002), ("c", 1003)], {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"}
    )
    d.start()
    assert sorted(net.hellos()) == [("10.0.0.2", 1002), ("10.0.0.3", 1003)]
    status = Status("b:1002", "local", NO_CLUSTER, False, 0)
    node.peers.discovery_handlers[Status]("B", status, ("10.0.0.2", 1002))
    other = Status("10.0.0.3:1003", "local", NO_CLUSTER, False, 0)  # c's --listen is its IP
    node.peers.discovery_handlers[Status]("C", other, ("10.0.0.3", 1003, 0, 0))
    clock.advance(HELLO_INTERVAL)
    # Both answered free, but c says it is 10.0.0.3:1003, below a:1001: the
    # addresses the nodes say they have are compared, so c starts, not a.
    assert set(d.statuses) == {("b", 1002), ("c", 1003)}
    assert node.genesis == []
    node.peers.discovery_handlers[Status](
        "C", Status("c:1003", "local", NO_CLUSTER, False, 0), ("10.0.0.3", 1003)
    )
    clock.advance(HELLO_INTERVAL)
    assert node.genesis == [2]


def test_a_silent_named_peer_is_looked_up_again_and_found_at_its_new_address() -> None:
    d, node, net, clock, dns = named_discovery([("b", 1002)], {"a": "10.0.0.1", "b": "10.0.0.2"})
    d.start()
    assert net.hellos() == [("10.0.0.2", 1002)]
    dns.records["b"] = "10.0.0.7"  # b came back elsewhere
    for _ in range(int(STATUS_TTL / HELLO_INTERVAL) + 2):
        clock.advance(HELLO_INTERVAL)
    assert dns.asked == ["b"]
    assert net.hellos()[-1] == ("10.0.0.7", 1002)
    node.peers.discovery_handlers[Status](
        "B", Status("b:1002", "local", "CID", True, 3), ("10.0.0.7", 1002)
    )
    clock.advance(HELLO_INTERVAL)
    assert [a for a, _ in net.fetches] == [("10.0.0.7", 1002)]  # fetched by address


def test_own_address_under_another_name_is_not_a_peer() -> None:
    d, node, net, clock, dns = named_discovery(
        [("a", 1001), ("self-alias", 1001)], {"a": "10.0.0.1", "self-alias": "10.0.0.1"},
        addr="10.0.0.1:1001",
    )
    d.start()
    assert node.genesis == [0] and net.sent == []
