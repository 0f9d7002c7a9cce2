"""The node's lease timers and keepalives (doozer/node/leases.py) on one node
with a deterministic clock: when EXPIRE is proposed (CONSENSUS.md §L3), how
keepalives are batched and answered (§L2)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from doozer.errors import DoozerError
from doozer.node import Node
from doozer.node.leases import CHECK_EVERY, DRIFT
from doozer.node.snapshot import Snapshot
from doozer.store import mutation
from doozer.testing import single_node


def granted(node: Node, clock: Clock, ttl: int) -> str:
    out: list[Any] = []
    node.grant(ttl).addCallback(out.append)
    clock.advance(0)
    lease_id, rev = out[0]
    assert rev == node.store.rev
    return lease_id


def advance(clock: Clock, seconds: float, step: float = 0.1) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


def leased(ttl: int, **options: Any) -> tuple[Clock, Node, str]:
    """A single node on a deterministic clock, holding one lease of ``ttl``."""
    clock = Clock()
    node = single_node(clock, **options)
    return clock, node, granted(node, clock, ttl)


def assert_ends_at(node: Node, clock: Clock, lease_id: str, deadline: float,
                   before: float = 0.1, after: float = 0.2) -> None:
    """The lease is still there ``before`` seconds ahead of ``deadline`` (a
    clock time), and gone once the next timer check after it has run."""
    advance(clock, deadline - before - clock.seconds())
    assert node.store.leases.get(lease_id) is not None, "ended early"
    advance(clock, CHECK_EVERY + after)
    assert node.store.leases.get(lease_id) is None, "ended late"


def test_a_silent_lease_expires_after_ttl_times_the_drift_margin_and_not_before() -> None:
    clock, node, lease_id = leased(10)
    node.set("/f", b"x", lease=lease_id)
    clock.advance(0)
    assert node.lease(lease_id)["files"] == ["/f"]
    advance(clock, 10 * DRIFT - 0.1)
    assert node.store.leases.get(lease_id) is not None
    assert node.lease_timers.expires_proposed == 0
    rev = node.store.rev
    advance(clock, CHECK_EVERY + 0.2)  # the next look after the deadline
    assert node.lease_timers.expires_proposed == 1
    assert node.store.leases.get(lease_id) is None
    for path in ("/f", f"/ctl/lease/{lease_id}"):
        with pytest.raises(DoozerError):
            node.store.get(path, node.store.rev)
    assert node.store.rev == rev + 1  # the lease's files and its record at one rev
    with pytest.raises(DoozerError) as e:
        node.lease(lease_id)
    assert e.value.code == "NOENT"


def test_a_renewal_applied_later_moves_the_deadline() -> None:
    clock, node, lease_id = leased(4)
    advance(clock, 3.0)
    answers: list[Any] = []
    node.keepalive(lease_id).addCallback(answers.append)
    clock.advance(0)
    assert answers == [4]
    renewed_at = clock.seconds()
    assert node.lease_timers.started(lease_id) == renewed_at
    assert_ends_at(node, clock, lease_id, renewed_at + 4 * DRIFT)


def test_a_keepalive_storm_keeps_one_deadline_per_lease_and_the_last_renewal_counts() -> None:
    # Each renewal used to push a heap entry that lived until its deadline:
    # a client renewing in a loop grew the node by keepalives/s x ttl entries.
    clock, node, lease_id = leased(4)
    entries = []
    for _ in range(2000):  # 20 s of renewals 10 ms apart, past several first deadlines
        node.keepalive(lease_id)
        clock.advance(0.01)
        entries.append(len(node.lease_timers._heap))
    assert max(entries) <= 2
    last = node.lease_timers.started(lease_id)
    assert last is not None
    assert_ends_at(node, clock, lease_id, last + 4 * DRIFT)


def test_a_renewal_that_beats_an_expire_is_timed_from_its_own_deadline() -> None:
    # The EXPIRE proposed at the deadline loses to a RENEW ordered before it
    # (L4); the lease's one heap entry then waits REPROPOSE_AFTER (5 s) to
    # propose again. The renewal's deadline, ttl x 1.02 later, comes first
    # and must get an entry of its own: kept alone, the entry made the
    # lease expire up to 5 s late (the lease simulation, seed 40: G2).
    clock, node, lease_id = leased(1)
    timers = node.lease_timers
    # Past the deadline with the check not yet run, a keepalive's RENEW and
    # the check's EXPIRE go into one instance, the RENEW first.
    assert timers._check_call is not None
    timers._check_call.cancel()
    advance(clock, 1.1)
    proposed = timers.expires_proposed
    node.keepalive(lease_id)
    timers._flush()
    timers.check()
    clock.advance(0)
    assert timers.expires_proposed == proposed + 1
    assert node.store.leases.get(lease_id) is not None  # the RENEW came first
    assert timers.started(lease_id) == clock.seconds()
    assert_ends_at(node, clock, lease_id, clock.seconds() + 1 * DRIFT, before=0.05, after=0.25)


def test_keepalives_of_one_turn_travel_in_one_renew_that_takes_no_rev() -> None:
    clock = Clock()
    node = single_node(clock)
    ids = [granted(node, clock, 30) for _ in range(3)]
    rev = node.store.rev
    renews = node.lease_timers.renews_proposed
    answers: list[Any] = []
    for lease_id in ids + [ids[0]]:
        node.keepalive(lease_id).addCallback(answers.append)
    clock.advance(0)
    assert answers == [30, 30, 30, 30]
    assert node.lease_timers.renews_proposed == renews + 1
    assert node.store.rev == rev


def test_a_keepalive_of_a_gone_lease_is_noent() -> None:
    clock, node, lease_id = leased(5)
    revs: list[Any] = []
    node.revoke(lease_id).addCallback(revs.append)
    clock.advance(0)
    assert revs == [node.store.rev]
    errors: list[Any] = []
    node.keepalive(lease_id).addErrback(lambda f: errors.append(f.value))
    node.keepalive("NEVERGRANTED").addErrback(lambda f: errors.append(f.value))
    clock.advance(0)
    assert [e.code for e in errors] == ["NOENT", "NOENT"]
    assert errors[0].extra["lease"] == lease_id


def test_a_keepalive_without_a_decision_is_unavailable() -> None:
    clock, node, lease_id = leased(5, write_timeout=2.5)
    node.sequencer.propose = lambda item, now: None  # no quorum, as it were
    errors: list[Any] = []
    node.keepalive(lease_id).addErrback(lambda f: errors.append(f.value))
    clock.advance(0)  # the turn ends: its RENEW is proposed
    clock.advance(2.4)
    assert errors == []
    clock.advance(0.2)
    assert [e.code for e in errors] == ["UNAVAILABLE"]


def test_bad_arguments_are_refused_before_anything_is_proposed() -> None:
    node = single_node(Clock())
    for ttl in (0, 3601, 1.5, "10"):
        with pytest.raises(DoozerError) as e:
            node.grant(ttl)  # type: ignore[arg-type]
        assert e.value.code == "BAD_ARG"
    for bad in ("", "a/b", "x" * 65):
        for call in (node.keepalive, node.revoke, node.lease):
            with pytest.raises(DoozerError) as e:
                call(bad)
            assert e.value.code == "BAD_ARG"
        if bad:  # an empty lease on a write means none
            with pytest.raises(DoozerError) as e:
                node.set("/f", b"", lease=bad)
            assert e.value.code == "BAD_ARG"


def test_a_write_attached_to_a_missing_lease_is_noent_naming_it() -> None:
    clock = Clock()
    node = single_node(clock)
    errors: list[Any] = []
    node.set("/f", b"x", lease="NOSUCHLEASE").addErrback(lambda f: errors.append(f.value))
    clock.advance(0)
    assert errors[0].code == "NOENT" and errors[0].extra["lease"] == "NOSUCHLEASE"


def test_an_installed_snapshot_restarts_every_timer_from_now() -> None:
    clock, node, lease_id = leased(10)
    advance(clock, 8.0)
    # a peer's snapshot one instance ahead, holding the same lease and basis
    from doozer.store import snapshot as store_snapshot
    store = store_snapshot.load(store_snapshot.dump(node.store), hist=node.store.hist)
    store.apply([])
    seqn = node.applied_seqn + 1
    alpha = node.sequencer.alpha
    snap = Snapshot(cluster=node.cluster, cluster_id=node.cluster_id or "", alpha=alpha,
                    seqn=seqn, members={s: [node.id] for s in range(seqn + 1, seqn + alpha + 1)},
                    store=store_snapshot.dump(store))
    installed_at = clock.seconds()
    assert node.install(snap)
    advance(clock, CHECK_EVERY + 0.1)
    assert node.lease_timers.started(lease_id) is not None
    assert node.lease_timers.started(lease_id) >= installed_at
    started = node.lease_timers.started(lease_id)
    assert_ends_at(node, clock, lease_id, started + 10 * DRIFT)  # not 8 s early


def test_a_node_that_does_not_vote_never_proposes_expire() -> None:
    clock, node, lease_id = leased(2)
    voting = type(node).voting
    try:
        type(node).voting = property(lambda self: False)  # type: ignore[method-assign,assignment]
        advance(clock, 10.0)
        assert node.lease_timers.expires_proposed == 0
        assert node.store.leases.get(lease_id) is not None
    finally:
        type(node).voting = voting  # type: ignore[method-assign]
    advance(clock, CHECK_EVERY + 0.1)
    assert node.lease_timers.expires_proposed == 1
    assert node.store.leases.get(lease_id) is None


def test_many_keepalives_split_into_renews_of_at_most_max_renew(monkeypatch: Any) -> None:
    clock = Clock()
    node = single_node(clock)
    monkeypatch.setattr(mutation, "MAX_RENEW", 2)
    ids = [granted(node, clock, 30) for _ in range(5)]
    renews = node.lease_timers.renews_proposed
    answers: list[Any] = []
    for lease_id in ids:
        node.keepalive(lease_id).addCallback(answers.append)
    clock.advance(0)
    assert len(answers) == 5
    assert node.lease_timers.renews_proposed == renews + 3
