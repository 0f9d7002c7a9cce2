"""The seeded lease simulation (tests/leasesim.py): G1, G2 and G3 of SPEC §9
checked in true time on real nodes whose clocks drift by up to 1%, under
message loss, partitions, pauses, a membership change and snapshot
installs, with keepalives racing the members' expiry timers.

``DOOZER_LEASE_SIM_SEEDS`` sets the number of seeds (default 1000, in
chunks); ``DOOZER_LEASE_SIM_FIRST_SEED`` the first. A soak::

    DOOZER_LEASE_SIM_SEEDS=20000 DOOZER_LEASE_SIM_FIRST_SEED=1000 \\
        /work/venv/bin/python -m pytest tests/node/test_leases_sim.py -q

A failing seed is printed with its trace; replay it with
``leasesim.scenario(seed)``. ``tests/leasesim_mutants.py`` re-introduces
each bug the rules of CONSENSUS.md §L exist against and counts the seeds
that catch it (docs/testing.md has the figures).
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Optional

import pytest

import leasesim
from seeds import map_seeds
import nodesim
from doozer.node.leases import DRIFT

SEEDS = int(os.environ.get("DOOZER_LEASE_SIM_SEEDS", "1000"))
FIRST = int(os.environ.get("DOOZER_LEASE_SIM_FIRST_SEED", "0"))
CHUNK = 50


def _run_seed(seed: int) -> Optional[str]:
    """One seed's violation, or None."""
    try:
        leasesim.scenario(seed)
    except nodesim.Violation as e:
        return f"{e}\n(replay: leasesim.scenario({seed}))"
    return None


@pytest.mark.parametrize("chunk", range(max(1, (SEEDS + CHUNK - 1) // CHUNK)))
def test_leases_keep_g1_g2_g3_under_random_faults(
    chunk: int, seed_workers: Optional[concurrent.futures.Executor]
) -> None:
    """Every seed keeps G1-G3 and the node simulation's invariants."""
    start = FIRST + chunk * CHUNK
    seeds = range(start, min(start + CHUNK, FIRST + SEEDS))
    failures = [f for f in map_seeds(seed_workers, _run_seed, seeds) if f is not None]
    assert not failures, "\n\n".join(failures)


def test_the_runs_reach_the_cases_the_rules_are_for() -> None:
    """Over a few seeds the runs do make the cases CONSENSUS.md §L guards:
    EXPIREs decided after a renewal replaced their basis (L4), snapshot
    installs (L3's restart of timers), keepalives answered 200, with 3 and
    5 nodes and clocks at different rates."""
    totals = {"answered": 0.0, "stale_expires": 0.0, "installs": 0.0, "catch_up": 0.0, "late_from_heal": 0.0}
    sizes = set()
    rates = set()
    for seed in range(10):
        ls = leasesim.scenario(seed)
        for k, v in ls.stats().items():
            totals[k] += v
        sizes.add(ls.n)
        rates.update(round(sn.rate, 4) for sn in ls.sim.nodes.values())
    assert sizes == {3, 5}
    assert len(rates) > 3 and all(0.99 <= r <= 1.01 for r in rates)
    assert totals["stale_expires"] > 0 and totals["installs"] > 0 and totals["answered"] > 100, totals


def test_drifting_clocks_run_at_their_rates() -> None:
    """A node's clock runs at its rate against true time, its timers fire at
    the true time its rate makes them due, and a paused node's clock stands
    still, then jumps by the pause times its rate."""
    sim = nodesim.NodeSim(1, 1)
    rates = iter([1.01])
    sim.rate_for = lambda: next(rates)
    sn = sim._spawn()
    fired = []
    sn.clock.callLater(DRIFT * 10, lambda: fired.append(sim.now))
    start = sn.clock.seconds()
    sim.run_for(5.0)
    assert sn.clock.seconds() - start == pytest.approx(5.05)
    sim.pause(sn, 2.0)
    sim.run_for(1.0)
    assert sn.clock.seconds() - start == pytest.approx(5.05)  # still while stopped
    sim.run_for(1.5)
    assert sn.clock.seconds() - start == pytest.approx(7.5 * 1.01)
    sim.run_for(5.0)
    assert fired == [pytest.approx(DRIFT * 10 / 1.01)]
