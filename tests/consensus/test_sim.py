"""Deterministic simulation of whole clusters under faults (tests/sim.py).

Each run is one seed: loss, duplication, reordering, partitions, crashes and
a node joining by snapshot, then healing. After every run the simulator has
checked agreement at every seqn, contiguous logs, one ``M(s)`` everywhere,
acknowledged items in the log, no item applied at two seqns, and that every
pending item was decided once a quorum could talk again.

``DOOZER_SIM_SEEDS`` sets the seeds per cluster size (default 1000, split in
chunks); ``DOOZER_SIM_FIRST_SEED`` the first one. A soak::

    DOOZER_SIM_SEEDS=100000 DOOZER_SIM_FIRST_SEED=5000 \\
        /work/venv/bin/python -m pytest tests/consensus/test_sim.py -q

A failing seed is printed; replay it with ``sim.scenario(seed, n)``.
"""

from __future__ import annotations

import os

import pytest

import sim

SEEDS = int(os.environ.get("DOOZER_SIM_SEEDS", "1000"))
FIRST = int(os.environ.get("DOOZER_SIM_FIRST_SEED", "0"))
CHUNK = 100


def _run(n: int, seeds: range, bundle: bool = False) -> list[str]:
    failures = []
    for seed in seeds:
        try:
            sim.scenario(seed, n, bundle=bundle)
        except sim.Violation as e:
            failures.append(f"{e} (replay: sim.scenario({seed}, {n}, bundle={bundle}))")
    return failures


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("chunk", range(max(1, (SEEDS + CHUNK - 1) // CHUNK)))
def test_random_faults(n: int, chunk: int) -> None:
    """Every seeded run under random faults keeps all invariants and recovers."""
    start = FIRST + chunk * CHUNK
    seeds = range(start, min(start + CHUNK, FIRST + SEEDS))
    failures = _run(n, seeds)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("chunk", range(max(1, (SEEDS // 2 + CHUNK - 1) // CHUNK)))
def test_random_faults_bundled(n: int, chunk: int) -> None:
    """The same runs with each pump's messages to a peer in one Bundle datagram
    (as the node sends them): a lost, duplicated or late datagram now loses,
    repeats or delays several messages at once; every invariant still holds."""
    start = FIRST + chunk * CHUNK
    seeds = range(start, min(start + CHUNK, FIRST + SEEDS // 2))
    failures = _run(n, seeds, bundle=True)
    assert not failures, "\n".join(failures)


# Seeds that once failed, each for the bug it found (see docs/consensus.md).
PINNED = [
    (6, 3),  # window blocked by a dead owner's instances with nothing proposed later
    (10, 3),  # M(s) set after its instance was handed out left a hole in the window
    (256, 3),  # a PREPARE below the floor went unanswered (now TOO_OLD -> snapshot)
    (27, 3),
    (76, 3),
]


@pytest.mark.parametrize("seed,n", PINNED)
def test_pinned_seed(seed: int, n: int) -> None:
    """A seed that once exposed a bug keeps all invariants."""
    sim.scenario(seed, n)


def test_replay_is_exact() -> None:
    """Running one seed twice gives the same log and the same traffic."""
    first = sim.scenario(1234, 5)
    second = sim.scenario(1234, 5)
    assert first.chosen == second.chosen
    assert first.sent == second.sent
    assert first.clock.seconds() == second.clock.seconds()


def test_quorum_loss_stops_then_resumes() -> None:
    """With a majority partitioned away nothing is decided; healing resumes it."""
    s = sim.Sim(7, n=3)
    s.partition([["n0"], ["n1", "n2"]])
    s.blocked.update({("n1", "n2"), ("n2", "n1")})  # nobody has a quorum
    item = s.write("n0")
    s.run_until(3.0)
    assert item in s.nodes["n0"].pending
    assert not s.chosen or all(item not in b for b in s.chosen.values())
    s.heal()
    s.run_until(6.0)
    assert item in s.nodes["n0"].acked
    s.check()


def test_one_member_cluster_decides_without_network() -> None:
    """A one-member cluster decides a write in the same pump, sending nothing."""
    s = sim.Sim(3, n=1)
    item = s.write("n0")
    s.run_until(0.0)
    assert s.nodes["n0"].acked[item] == 1
    assert s.sent == 0


def test_crashed_owner_is_revoked() -> None:
    """Writes keep being decided after a member crashes: its turns are revoked."""
    s = sim.Sim(11, n=3)
    s.crash("n2")
    items = [s.write("n0") for _ in range(5)]
    s.run_until(5.0)
    assert all(i in s.nodes["n0"].acked for i in items)
    assert sum(n.seq.counters.get("prepared", 0) for n in s.live()) > 0
    s.check()


def test_joined_node_becomes_member_and_votes() -> None:
    """A node that joins by snapshot and is added to the CAL votes α later."""
    s = sim.Sim(5, n=3, alpha=2)
    for _ in range(3):
        s.write("n0")
    s.run_until(1.0)
    s.join("j0", "n1")
    s.write("j0", b"cal:add:j0")
    s.run_until(2.0)
    for _ in range(6):
        s.write("n1")
        s.run_until(s.clock.seconds() + 0.2)
    s.run_until(s.clock.seconds() + 2.0)
    j0 = s.nodes["j0"]
    assert j0.seq.is_member()
    assert "j0" in s.members[max(s.members)]
    s.check()
