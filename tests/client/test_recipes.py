"""The recipes of docs/recipes.md (examples/election.py, examples/registry.py)
against one node in memory on a Clock. Killing a candidate's or a
registrant's address stands for kill -9: it stops renewing and revokes
nothing. The same recipes as real processes: tests/process/test_recipes_process.py."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from clientutil import World, outcome
from twisted.internet.defer import ensureDeferred

from doozer.client import NoEnt, RevMismatch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))

import election  # noqa: E402
import registry  # noqa: E402

KEY = "/election/master"
WORK = "/election/work"
TTL = 6


def _world() -> World:
    # one address per participant, all reaching the same node, so that one
    # participant can be cut off (its "process" killed) alone
    return World(*(f"node:{i}" for i in range(1, 6)))


def _candidate(w: World, name: str, log: list, addr: str, ttl: int = TTL) -> Any:
    return election.Candidate(
        w.client(addr), KEY, name, w.clock, ttl,
        on_change=lambda master, holder: log.append((name, master, holder)),
    )


def _pair(w: World, log: list) -> tuple[Any, Any]:
    """alice (master, on node:1) and bob (following, on node:2)."""
    alice, bob = _candidate(w, "alice", log, "node:1"), _candidate(w, "bob", log, "node:2")
    alice.start()
    w.settle()
    bob.start()
    w.settle()
    assert alice.is_master and not bob.is_master
    return alice, bob


def _work(w: World, candidate: Any, value: str) -> Any:
    return w.resolve(ensureDeferred(candidate.fenced([("set", WORK, value)])))


# ----------------------------------------------------------------------
# election


def test_the_first_candidate_creates_the_key_on_its_lease_and_the_second_follows() -> None:
    """The master's key is attached to its lease; its rev is the token."""
    w = _world()
    log: list = []
    alice, bob = _pair(w, log)
    assert bob.holder == "alice"
    key = w.resolve(w.client().get(KEY))
    assert key.value == b"alice" and alice.token == key.rev
    assert w.resolve(w.client().lease_info(alice.lease.id))["files"] == [KEY]
    assert log == [("alice", True, "alice"), ("bob", False, "alice")]


def test_a_live_master_stays_master_and_writes_nothing_to_stay() -> None:
    """Ten ttls pass: the master's keepalives take no rev, so the store
    does not move and the key keeps its rev (the token)."""
    w = _world()
    alice, bob = _pair(w, [])
    rev, token = w.node.store.rev, alice.token
    w.advance(10 * TTL)
    assert alice.is_master and not bob.is_master and alice.token == token
    assert w.node.store.rev == rev
    assert w.resolve(w.client().get(KEY)).rev == token


def test_a_killed_master_is_replaced_after_its_lease_expires_and_not_before() -> None:
    """kill -9 the master: bob takes over once the node expires the lease
    (G1: not before ttl after its last answered keepalive; G2: within
    ttl × 1.02 + 2 s). The dead master's own client had stepped it down
    before bob became master: never two at once."""
    w = _world()
    log: list = []
    alice, bob = _pair(w, log)
    w.advance(TTL / 3 + 0.5)  # a keepalive answered
    last_confirmed = alice.lease.confirmed_until
    w.net.kill("node:1")
    killed = w.clock.seconds()
    w.advance(last_confirmed - w.clock.seconds() - 0.5)
    assert not bob.is_master
    w.advance(last_confirmed - w.clock.seconds() + TTL * 0.02 + 2)
    assert bob.is_master and w.clock.seconds() - killed <= TTL * 1.02 + 2
    assert w.resolve(w.client().get(KEY)).value == b"bob"
    assert log.index(("alice", False, "")) < log.index(("bob", True, "bob"))


def test_fenced_writes_of_a_deposed_master_are_refused() -> None:
    """alice's writes carry her token; once bob holds the key, the same
    write with her token (and lease) is REV_MISMATCH and changes nothing."""
    w = _world()
    alice, bob = _pair(w, [])
    _work(w, alice, "alice 1")
    token, lease_id = alice.token, alice.lease.id
    w.net.kill("node:1")
    w.advance(TTL * 1.02 + 2)
    assert bob.is_master and bob.token > token
    assert not alice.is_master and alice.token is None
    with pytest.raises(election.NotMaster):
        _work(w, alice, "alice 2")  # her own client knows: nothing sent
    # a write that was already on its way when she was deposed:
    compare, ops = election.fenced_txn(KEY, token, lease_id, [("set", WORK, "alice 2")])
    with pytest.raises(RevMismatch) as info:
        w.resolve(w.client().txn(compare, ops))
    assert info.value.index == 0 and info.value.rev == bob.token
    assert w.resolve(w.client().get(WORK)).value == b"alice 1"
    _work(w, bob, "bob 1")
    assert w.resolve(w.client().get(WORK)).value == b"bob 1"


def test_the_fence_also_refuses_writes_between_the_lease_end_and_the_next_claim() -> None:
    """With nobody to take over, the key is simply gone: a compare on the
    token alone would pass (a missing file counts as rev 0), so the fence
    also needs the lease, and is NOENT once it ended."""
    w = _world()
    alice = _candidate(w, "alice", [], "node:1")
    alice.start()
    w.settle()
    token, lease_id = alice.token, alice.lease.id
    w.net.kill("node:1")
    w.advance(TTL * 1.02 + 2)
    with pytest.raises(NoEnt):
        w.resolve(w.client().get(KEY))
    compare, ops = election.fenced_txn(KEY, token, lease_id, [("set", WORK, "late")])
    with pytest.raises(NoEnt) as info:
        w.resolve(w.client().txn(compare, ops))
    assert info.value.extra["lease"] == lease_id
    with pytest.raises(NoEnt):
        w.resolve(w.client().get(WORK))
    # the compare alone would have let it through:
    assert w.resolve(w.client().txn(compare, ops[:-1])) > 0


def test_a_master_whose_lease_is_lost_stops_at_once() -> None:
    """No keepalive confirmed (no quorum): at confirmed_until the master
    steps down, before the cluster could expire the lease, and refuses to
    do fenced work."""
    w = World("node:1", write_timeout=2.0)
    log: list = []
    alice = _candidate(w, "alice", log, "node:1")
    alice.start()
    w.advance(TTL / 3 + 0.5)
    confirmed = alice.lease.confirmed_until
    w.node.sequencer.propose = lambda item, now: None  # no quorum from now on
    w.advance(confirmed - w.clock.seconds() - 0.25)
    assert alice.is_master
    w.advance(0.5)
    assert not alice.is_master and "lease lost" in alice.why
    assert log[-1] == ("alice", False, "")
    with pytest.raises(election.NotMaster):
        _work(w, alice, "x")


def test_stop_revokes_the_lease_and_hands_over_at_once() -> None:
    """A clean exit revokes the lease: the key goes at once and bob takes
    over without waiting a ttl."""
    w = _world()
    log: list = []
    alice, bob = _candidate(w, "alice", log, "node:1", 60), _candidate(w, "bob", log, "node:2", 60)
    alice.start()
    w.settle()
    bob.start()
    w.settle()
    stopped = outcome(alice.stop())
    w.settle()
    assert stopped == [None]
    assert bob.is_master and not alice.is_master
    assert w.resolve(w.client().leases())[0]["id"] == bob.lease.id


def test_two_followers_racing_for_the_key_elect_exactly_one() -> None:
    """The master dies: of two followers seeing the del, exactly one
    creates the key; the other follows it."""
    w = _world()
    log: list = []
    alice = _candidate(w, "alice", log, "node:1")
    others = [_candidate(w, n, log, f"node:{i}") for i, n in ((2, "bob"), (3, "carol"))]
    alice.start()
    w.settle()
    for c in others:
        c.start()
    w.settle()
    w.net.kill("node:1")
    w.advance(TTL * 1.02 + 2 + TTL / 3)
    winner = [c for c in others if c.is_master]
    assert len(winner) == 1
    loser = [c for c in others if not c.is_master][0]
    assert loser.holder == winner[0].name


def test_a_master_whose_key_is_overwritten_steps_down_and_follows() -> None:
    """Someone clobbers the key: the master sees the change and steps down
    (it does not act on a token that no longer holds)."""
    w = _world()
    alice = _candidate(w, "alice", [], "node:1")
    alice.start()
    w.settle()
    w.write(KEY, b"mallory")
    w.settle()
    assert not alice.is_master and alice.holder == "mallory"
    with pytest.raises(election.NotMaster):
        _work(w, alice, "x")


def test_a_claim_that_committed_but_answered_rev_mismatch_still_makes_it_master() -> None:
    """The claim's answer was lost and the client's retry on another node
    said REV_MISMATCH (its own create): the key is on its own lease, so it
    is master — not a follower of itself waiting for ever."""
    w = _world()
    alice = _candidate(w, "alice", [], "node:1")
    real_set = alice.client.set

    async def set_then_mismatch(path: str, value: bytes, rev: int = -1, lease: Any = None) -> int:
        got = await real_set(path, value, rev, lease=lease)
        raise RevMismatch("as a retry after failover answers", rev=got)

    alice.client.set = lambda *a, **k: ensureDeferred(set_then_mismatch(*a, **k))
    alice.start()
    w.settle()
    key = w.resolve(w.client().get(KEY))
    assert alice.is_master and alice.token == key.rev


# ----------------------------------------------------------------------
# registry


def _keep(w: World, addr: str, instance: str, address: str, seen: list) -> Any:
    return ensureDeferred(registry.keep_registered(
        w.client(addr), "web", instance, address, TTL,
        lambda lease_id, rev: seen.append((instance, lease_id, rev))))


def test_lookup_returns_every_registered_instance_at_one_rev() -> None:
    """Entries are attached to their leases; lookup returns them all with the rev read at."""
    w = _world()
    seen: list = []
    _keep(w, "node:1", "w1", "10.0.0.1:80", seen)
    _keep(w, "node:2", "w2", "10.0.0.2:80", seen)
    w.settle()
    c = w.client()
    table = w.resolve(ensureDeferred(registry.lookup(c, "web")))
    assert table.instances == {"w1": "10.0.0.1:80", "w2": "10.0.0.2:80"}
    assert table.rev == w.node.store.rev
    for instance, lease_id, _ in seen:
        assert w.resolve(c.lease_info(lease_id))["files"] == [f"/svc/web/{instance}"]


def test_follow_sees_registrations_and_their_end_without_gaps() -> None:
    """follow gives the snapshot, then a table after each change: a new
    instance, a re-registration, a clean exit (revoked: gone at once) and a
    killed process (gone once its lease expires)."""
    w = _world()
    seen: list = []
    _keep(w, "node:1", "w1", "a", seen)
    w.settle()
    tables: list = []

    async def run() -> None:
        async for table in registry.follow(w.client("node:5"), "web"):
            tables.append(table.instances)

    done = outcome(ensureDeferred(run()))
    w.settle()
    w2 = _keep(w, "node:2", "w2", "b", seen)
    w.settle()
    _keep(w, "node:3", "w1", "a2", seen)  # w1 moved: the latest registration wins
    w.settle()
    w2.cancel()  # clean exit
    w.settle()
    assert len(outcome(w2)) == 1
    assert tables == [{"w1": "a"}, {"w1": "a", "w2": "b"}, {"w1": "a2", "w2": "b"}, {"w1": "a2"}]
    w.net.kill("node:3")  # kill -9 of the process that registered w1 last
    w.advance(TTL * 1.02 + 2)
    assert tables[-1] == {}
    assert done == []


def test_a_registration_whose_lease_is_lost_registers_again() -> None:
    """The lease ends behind the process's back (a partition longer than
    the ttl; here revoked): the process, still alive, grants a new lease and
    writes its entry again."""
    w = _world()
    seen: list = []
    _keep(w, "node:1", "w1", "a", seen)
    w.settle()
    first = seen[-1][1]
    w.resolve(w.client().revoke(first))
    w.advance(TTL)
    assert len(seen) == 2 and seen[-1][1] != first
    table = w.resolve(ensureDeferred(registry.lookup(w.client(), "web")))
    assert table.instances == {"w1": "a"}


def test_format_table_lists_instances_sorted() -> None:
    """The printed table is the rev then 'instance address' lines, sorted."""
    table = registry.Table("web", 7, {"b": "2", "a": "1"})
    assert registry.format_table(table) == "rev 7\na 1\nb 2\n"
