"""What a node takes from peers it cannot trust (SPEC §12, issue 16).

Without a cluster key nothing authenticates a datagram's sender, so a node
hears only CAL members; with a key (or --insecure-peers) a non-member is a
trusted node, but its FORWARDs may still carry only its own bookkeeping.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from doozer.store import mutation
from doozer.consensus.instance import NOOP
from doozer.consensus.messages import Accept, Forward, Learn, Prepare
from doozer.testing import single_node

FAR = 10**9


_requests = iter(range(1, 10**6))


def item(origin: str, path: str, value: bytes = b"x", kind: int = mutation.SET) -> bytes:
    return mutation.Mutation(kind, origin, next(_requests), path, value, -1, until=FAR).encode()


def node_and_clock(trust: bool):
    clock = Clock()
    node = single_node(clock, rw_secret=b"rw")
    node.peers.trust_outsiders = trust
    return node, clock


def test_without_a_key_a_forged_forward_changes_nothing() -> None:
    """[One Hello and one FORWARD of hand-built mutations from a made-up
    sender wrote /ctl/name=hijacked and emptied a CAL slot, past the
    secrets.] Without a key, a non-member's datagrams are dropped and
    counted: FORWARD, LEARN, ACCEPT, PREPARE alike."""
    node, clock = node_and_clock(trust=False)
    rev = node.store.rev
    node.peers.receive("EVIL", Forward((item("EVIL", "/ctl/name", b"hijacked"), item("EVIL", "/ctl/cal/0", b""))))
    node.peers.receive("EVIL", Learn(node.applied_seqn + 1, NOOP))
    node.peers.receive("EVIL", Learn(node.applied_seqn + 200, NOOP))
    node.peers.receive("EVIL", Accept(node.applied_seqn + 1, (1, "EVIL"), NOOP))
    node.peers.receive("EVIL", Prepare((node.applied_seqn + 1,), (5, "EVIL")))
    clock.advance(1)
    assert node.store.get("/ctl/name").value == b"local"
    assert node.store.cal() == [node.id] and node.store.rev == rev
    assert node.counters["non_member_dropped"] == 5


def test_with_trust_a_non_member_forwards_only_its_own_bookkeeping() -> None:
    """With a key a non-member is a node of the cluster (it joins by
    forwarding its record and its claim of a slot); anything else it
    forwards, or anything in another node's name, is refused and counted."""
    node, clock = node_and_clock(trust=True)
    node.writes.internal(mutation.SET, "/ctl/cal/1", b"")
    clock.advance(1)
    good = [item("J", "/ctl/node/J/addr", b"127.0.0.1:9"), item("J", "/ctl/cal/1", b"J")]
    bad = [item("J", "/ctl/name", b"hijacked"), item(node.id, "/x"), item("J", "/ctl/cal/1", b"OTHER"),
           item("J", "/ctl/node/OTHER/addr", b"1"), b"\xc1junk"]
    node.peers.receive("J", Forward(tuple(good + bad)))
    clock.advance(1)
    assert node.store.get("/ctl/name").value == b"local"
    assert node.store.get("/ctl/node/J/addr").value == b"127.0.0.1:9"
    assert node.store.cal() == [node.id, "J"]
    assert node.counters["forward_refused"] == len(bad)


def test_a_member_may_forward_any_write_of_its_own() -> None:
    """A member that finds itself outside the window forwards its queued
    client writes: those pass, as long as they are its own."""
    node, clock = node_and_clock(trust=False)
    node.writes.internal(mutation.SET, "/ctl/cal/1", b"M2")
    clock.advance(1)
    passed: list = []
    node.sequencer.receive = lambda sender, msg, now: passed.append((sender, msg))
    mine, theirs = item("M2", "/app/x", b"1"), item("M3", "/app/y", b"1")
    node.peers.receive("M2", Forward((mine, theirs)))
    assert passed == [("M2", Forward((mine,)))]
    assert node.counters["forward_refused"] == 1
