"""Leases across three whole nodes on a simulated network (tests/nodesim.py):
keepalives through any member keep a lease and its files on every node, a
silent client's lease goes everywhere within ``ttl × 1.02 + 2 s`` (G2), a
keepalive answered 200 means no expiry before ``ttl`` after it was sent
(G1), also when it races an expiry or a member that timed an older renewal
wakes from a pause."""

from __future__ import annotations

from typing import Any, Optional

import pytest

import nodesim
from doozer.node.leases import DRIFT


class Client:
    """A lease holder: what it sent, what was answered, when the lease went."""

    def __init__(self, sim: nodesim.NodeSim, lease_id: str) -> None:
        self.sim = sim
        self.lease_id = lease_id
        #: sim time of the send of each keepalive answered 200
        self.answered: list[float] = []
        self.refused: list[str] = []
        #: per node, the sim time it applied the lease's end
        self.gone_at: dict[str, float] = {}
        for sn in sim.nodes.values():
            sn.node.on_applied.append(lambda seqn, items, outcomes, sn=sn: self._seen(sn))

    def _seen(self, sn: nodesim.SimNode) -> None:
        if sn.name not in self.gone_at and sn.node.store.leases.get(self.lease_id) is None:
            self.gone_at[sn.name] = self.sim.now

    def keepalive(self, sn: nodesim.SimNode) -> None:
        if not sn.alive or sn.paused or not sn.node.writable:
            return
        sent = self.sim.now
        sn.node.keepalive(self.lease_id).addCallbacks(
            lambda ttl: self.answered.append(sent),
            lambda f: self.refused.append(f.value.code),
        )

    def check_g1(self, ttl: float) -> None:
        """No node applied the end before ``ttl`` after the last 200's send."""
        if self.answered:
            last = max(self.answered)
            for name, at in self.gone_at.items():
                assert at >= last + ttl, (
                    f"seed {self.sim.seed}: {name} expired the lease at {at:.3f}, "
                    f"before {last:.3f} + {ttl}\n" + self.sim.describe())


def cluster(seed: int) -> nodesim.NodeSim:
    sim = nodesim.NodeSim(seed, 3)
    sim.start()
    end = sim.now + 30
    while sim.now < end and not sim.healthy():
        sim.run_for(0.25)
    assert sim.healthy(), sim.describe()
    return sim


def grant(sim: nodesim.NodeSim, sn: nodesim.SimNode, ttl: int, path: Optional[str] = None) -> str:
    out: list[Any] = []
    sn.node.grant(ttl).addCallback(out.append)
    sim.run_for(0.5)
    lease_id: str = out[0][0]
    if path is not None:
        done: list[Any] = []
        sn.node.set(path, b"me", lease=lease_id).addBoth(done.append)
        sim.run_for(0.5)
        assert isinstance(done[0], int), done
    return lease_id


def present_everywhere(sim: nodesim.NodeSim, lease_id: str, path: str) -> bool:
    return all(sn.node.store.leases.get(lease_id) is not None
               and sn.node.store.leases.lease_of(path) == lease_id for sn in sim.live())


@pytest.mark.parametrize("seed", range(3))
def test_keepalives_keep_a_lease_and_a_silent_client_loses_it_everywhere(seed: int) -> None:
    sim = cluster(seed)
    nodes = list(sim.nodes.values())
    ttl = 3
    lease_id = grant(sim, nodes[0], ttl, "/svc/me")
    client = Client(sim, lease_id)
    for i in range(12):  # 4 ttls, renewed every ttl/3 through each member in turn
        client.keepalive(nodes[i % 3])
        sim.run_for(ttl / 3)
        assert present_everywhere(sim, lease_id, "/svc/me"), sim.describe()
    assert len(client.answered) >= 11 and client.refused == []
    last = max(client.answered)
    sim.run_until(last + ttl * DRIFT + 2)
    assert set(client.gone_at) == {sn.name for sn in nodes}, sim.describe()
    client.check_g1(ttl)
    for sn in nodes:
        assert sn.node.store.leases.get(lease_id) is None
        with pytest.raises(Exception):
            sn.node.store.get("/svc/me")


@pytest.mark.parametrize("seed", range(20))
def test_a_keepalive_racing_an_expiry_answered_200_holds_for_ttl_after_its_send(seed: int) -> None:
    sim = cluster(100 + seed)
    nodes = list(sim.nodes.values())
    ttl = 2
    lease_id = grant(sim, nodes[seed % 3], ttl)
    client = Client(sim, lease_id)
    # when the members applied the grant (their clocks run with the sim's)
    granted = min(sn.node.lease_timers.started(lease_id) or sim.now for sn in nodes)
    # keepalives around the moment the members' timers fire (a check every
    # deadline, ttl × 1.02 after the grant)
    sim.run_until(granted + ttl * DRIFT - 0.3 + sim.rng.random() * 0.4)
    for _ in range(6):
        client.keepalive(sim.rng.choice(nodes))
        sim.run_for(sim.rng.random() * 0.15)
    sim.run_for(ttl * DRIFT + 3)
    client.check_g1(ttl)
    assert set(client.gone_at) == {sn.name for sn in nodes}, sim.describe()
    assert set(client.refused) <= {"NOENT", "UNAVAILABLE"}


@pytest.mark.parametrize("seed", range(3))
def test_a_paused_member_does_not_expire_a_lease_renewed_through_the_others(seed: int) -> None:
    sim = cluster(200 + seed)
    nodes = list(sim.nodes.values())
    ttl = 2
    lease_id = grant(sim, nodes[0], ttl, "/svc/me")
    client = Client(sim, lease_id)
    sleeper = nodes[2]
    sim.pause(sleeper, 3 * ttl)
    end = sim.now + 5 * ttl
    while sim.now < end:
        client.keepalive(nodes[sim.rng.randrange(2)])
        sim.run_for(ttl / 3)
    assert not sleeper.paused
    assert client.gone_at == {}, sim.describe()
    assert present_everywhere(sim, lease_id, "/svc/me"), sim.describe()
    client.check_g1(ttl)
