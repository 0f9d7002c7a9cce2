"""Whole nodes on a simulated network (tests/nodesim.py): membership
chores, slot claims, node records and snapshot installs together.

``DOOZER_NODESIM_SEEDS`` sets how many random scenarios run for 3 nodes
(default 20; half as many for 5); a soak::

    DOOZER_NODESIM_SEEDS=500 /work/venv/bin/python -m pytest tests/test_nodesim.py -q

A failing seed is printed with the scenario's last steps; replay it with
``nodesim.scenario(seed, n)``.
"""

from __future__ import annotations

import os
import random

import pytest

import nodesim
from doozer.consensus.messages import TooOld
from doozer.node import Node

SEEDS = int(os.environ.get("DOOZER_NODESIM_SEEDS", "20"))


def healthy_within(sim: nodesim.NodeSim, seconds: float) -> bool:
    end = sim.now + seconds
    while sim.now < end and not sim.healthy():
        sim.run_for(0.25)
    return sim.healthy()


def away(sim: nodesim.NodeSim, sn: nodesim.SimNode, seconds: float, writes: bool = True) -> None:
    """Cut ``sn`` off for ``seconds`` while the others take writes."""
    sim.partition([sn])
    end = sim.now + seconds
    while sim.now < end:
        if writes:
            for other in sim.live():
                if other is not sn:
                    sim.write(other, "/load")
        sim.run_for(0.01)
    sim.heal()


def record(sn: nodesim.SimNode, name: str):
    try:
        return sn.node.store.get(f"/ctl/node/{name}/addr").value
    except Exception:  # noqa: BLE001 - missing
        return None


def test_a_node_forgotten_while_away_writes_its_record_again() -> None:
    """Regression (fault suite, seed 9102): a member cut off for longer
    than --timeout is removed from the CAL and its /ctl/node record deleted.
    It came back, claimed a slot again, but never rewrote its record, so
    new nodes (and any node whose store predates its return) had no address
    to reach it by."""
    sim = nodesim.NodeSim(1, 3)
    sim.start()
    assert healthy_within(sim, 10)
    n2 = sim.nodes["N2"]
    away(sim, n2, 2 * sim.timeout + 2)
    assert record(sim.nodes["N1"], "N2") is None  # forgotten meanwhile
    assert healthy_within(sim, 30), sim.describe()
    sim.run_for(2)
    for sn in sim.live():
        assert record(sn, "N2") == n2.node.addr.encode(), sn.name


def test_a_removed_member_whose_view_lost_every_address_still_copies_state(monkeypatch) -> None:
    """Regression (fault suite, seed 9102): both other members had been
    forgotten and come back without their records, then the third member
    was cut off long enough to need a snapshot and be removed. Its stale
    store held no address for any member, so it never fetched one: it stayed
    behind for good, believing itself a member, and the cluster stayed at
    two members. It must copy state from a member its transport has heard.

    Nodes now write their record again (the test above); that is switched
    off here, to show the fetch itself no longer depends on the records."""
    monkeypatch.setattr(Node, "_keep_own_record", lambda self: None)
    sim = nodesim.NodeSim(2, 3)
    sim.start()
    assert healthy_within(sim, 10)
    for name in ("N1", "N2"):
        away(sim, sim.nodes[name], 2 * sim.timeout + 2, writes=False)
        assert healthy_within(sim, 30), sim.describe()
    n3 = sim.nodes["N3"]
    assert record(n3, "N1") is None and record(n3, "N2") is None
    # Long enough for the others' logs (1,000 instances) to move past it.
    away(sim, n3, 3 * sim.timeout)
    others = [s for s in sim.live() if s is not n3]
    assert n3.node.applied_seqn < min(s.node.applied_seqn for s in others) - 1000
    sim.check_recovers()


def member_copies_snapshot_while_another_is_dead(seed: int) -> bool:
    """The situation of the first stalls (docs/testing.md, bug 3): member
    A falls behind; member C dies; a new node J copies B's state; A hears
    first from J, gets TOO_OLD and copies a snapshot from B while C is dead,
    so A and B must decide everything from then on together (C's removal,
    J's claim). Returns whether A did install a snapshot."""
    rng = random.Random(seed)
    sim = nodesim.NodeSim(seed, 3)
    sim.start()
    assert healthy_within(sim, 10)
    a, b, c = rng.sample([sim.nodes["N1"], sim.nodes["N2"], sim.nodes["N3"]], 3)
    away(sim, a, rng.uniform(0.3, 2.5), writes=True)
    sim.partition([a])
    sim.kill(c)
    sim.run_for(rng.uniform(0, 0.5))
    j = sim.join(b)
    floor = b.node.applied_seqn
    sim.heal()
    sim.run_for(rng.uniform(0, 0.05))
    if a.node.applied_seqn < floor:
        a.node.sequencer.receive(j.name, TooOld(a.node.applied_seqn + 1, floor + 1), a.clock.seconds())
        a.node._schedule_pump()
    end = sim.now + rng.uniform(2, 8)
    while sim.now < end:
        for w in (a, b, j):
            sim.write(w, f"/k{rng.randrange(5)}")
        sim.run_for(0.02)
    installed = any("installs" in line and a.name in line for line in sim.trace)
    sim.check_recovers()
    return installed


def test_a_member_copies_a_snapshot_while_another_is_dead() -> None:
    """Guards the path of bug 3 (a stall never reproduced since): the two
    live members go on deciding after one of them installed a snapshot."""
    installs = [member_copies_snapshot_while_another_is_dead(seed) for seed in range(8)]
    assert sum(installs) >= 4  # the path is taken, not skipped


@pytest.mark.parametrize("n", [3, 5])
def test_random_faults(n: int) -> None:
    """Seeded scenarios like the fault suite's: kill and replace, pause,
    partition and slow network under writes; after each fault the cluster
    heals, every live node is a member, writes commit, logs agree."""
    failures = []
    for seed in range(SEEDS if n == 3 else SEEDS // 2):
        try:
            nodesim.scenario(seed, n, duration=25.0)
        except nodesim.Violation as e:
            failures.append(str(e))
    assert not failures, "\n\n".join(failures)


def test_check_acks_catches_a_write_acknowledged_at_the_wrong_rev() -> None:
    """The simulation's own check: an acknowledged write must be in every
    live node's store at the rev it was acknowledged with."""
    sim = nodesim.NodeSim(3, 3)
    sim.start()
    assert healthy_within(sim, 10)
    for i in range(20):
        sim.write(sim.nodes[f"N{i % 3 + 1}"], f"/k{i % 4}")
        sim.run_for(0.05)
    sim.run_for(1)
    assert len(sim.acks) == 20
    sim.check_acks()
    rev, path, value = sim.acks[-1]
    sim.acks.append((rev, path, value + b"!"))  # a value nobody wrote
    with pytest.raises(nodesim.Violation, match="acknowledged write"):
        sim.check_acks()
    sim.acks[-1] = (rev - 1, path, value)  # the right value, a rev too early
    with pytest.raises(nodesim.Violation, match="acknowledged write"):
        sim.check_acks()


def one_way_loss_while_a_member_dies(seed: int) -> None:
    rng = random.Random(seed)
    sim = nodesim.NodeSim(seed, 3)
    sim.start()
    assert healthy_within(sim, 10)
    deaf, unheard, dying = rng.sample(sim.members(), 3)
    sim.one_way(unheard, deaf)
    for sn in (deaf, unheard, dying):
        sim.write(sn, "/k")
    sim.run_for(rng.uniform(0.0, 1.0))
    sim.kill(dying)
    end = sim.now + sim.timeout + rng.uniform(1.0, 4.0)
    while sim.now < end:
        for sn in (deaf, unheard):
            sim.write(sn, f"/k{rng.randrange(4)}")
        sim.run_for(0.05)
    sim.join()
    sim.run_for(1.0)
    sim.check_recovers()


def test_one_way_loss_while_a_member_dies_recovers_after_healing() -> None:
    """Regression (fault suite, docs/testing.md bug 7): one member stopped
    hearing another (one way) as the third died. The deaf member counted
    the dead one as alive a little longer than the unheard one, removed
    the unheard (live) member with its own vote, and left a CAL of itself
    and the dead member: no quorum ever again, even after healing."""
    for seed in range(12):
        one_way_loss_while_a_member_dies(seed)
