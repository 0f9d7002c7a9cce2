"""Leaving (SPEC §11) on whole simulated nodes: the SIGTERM hand-off under
write load, ``doozer leave``, and its refusal without a quorum.

Simulated time (tests/nodesim.py: one-way delays of 0.2-3 ms, --fill 0.1),
seeded: the latency bounds here are deterministic, and the same measurement
of a plain kill shows what they catch (a write waiting --fill and a
revocation for each of the dead member's turns: ~0.35 s).
"""

from __future__ import annotations

from typing import Any

import pytest

from doozer.errors import DoozerError
from nodesim import NodeSim, SimNode

#: The bound on the staying members' writes around the leaving: their worst
#: latency before it plus half a --fill (one scan period). Waiting for even
#: one of the leaver's turns costs a whole --fill and a revocation.
MARGIN = 0.05


class Writers:
    """Closed-loop writers on each of ``nodes``; a writer whose node does not
    take writes (it is leaving: READONLY) goes to ``fallback``, as the
    client's failover does. Records every write's latency and failure."""

    def __init__(self, sim: NodeSim, nodes: list[SimNode], fallback: SimNode, clients: int,
                 think: float = 0.0) -> None:
        self.sim = sim
        self.fallback = fallback
        # Seconds between an answer and the next write: a one-member
        # cluster answers in the same instant, and writers that never wait
        # would keep simulated time from moving.
        self.think = think
        self.on = True
        self.latency: list[tuple[float, float, str, str]] = []  # (issued, seconds, home, via)
        self.failed: list[tuple[float, str, Any]] = []
        self.refused = 0
        self._n = 0
        for sn in nodes:
            for k in range(clients):
                self._write(sn, k)

    def _write(self, home: SimNode, k: int) -> None:
        if not self.on:
            return
        via = home if home.alive and home.node.writable else self.fallback
        self._n += 1
        path, value = f"/load/{home.name}/{k}", str(self._n).encode()
        issued = self.sim.now
        try:
            d = via.node.set(path, value)
        except DoozerError:
            self.refused += 1  # not proposed: the client tries another node
            self.sim.at(0.001, self._write, home, k)
            return

        def done(result: Any) -> None:
            if isinstance(result, int):
                self.latency.append((issued, self.sim.now - issued, home.name, via.name))
                self.sim.acks.append((result, path, value))
            else:
                self.failed.append((issued, via.name, result.value))
            self.sim.at(self.think, self._write, home, k)

        d.addBoth(done)

    def worst(self, start: float, end: float, exclude: str) -> float:
        """The worst latency of writes issued in [start, end) not through ``exclude``."""
        return max(s for t, s, _, via in self.latency if start <= t < end and via != exclude)


def _sigterm(sim: NodeSim, sn: SimNode, into: dict) -> None:
    """What the service does on SIGTERM: hand off, then the process exits."""

    def exit_(result: dict) -> None:
        into.update(result, at=sim.now)
        sim.kill(sn)

    sn.node.leaving.hand_off().addCallback(exit_)


def _leave_under_load(seed: int, how: str, loss: float = 0.0) -> tuple[NodeSim, Writers, float, dict]:
    sim = NodeSim(seed, 3, timeout=60)
    sim.start()
    sim.run_for(3)
    assert sim.healthy(), sim.describe()
    n1, n2, n3 = (sim.nodes[x] for x in ("N1", "N2", "N3"))
    writers = Writers(sim, [n1, n2, n3], n1, clients=4)
    sim.net.loss = loss
    sim.run_for(1.5)
    t = sim.now
    done: dict = {}
    if how == "sigterm":
        _sigterm(sim, n3, done)
    else:
        sim.kill(n3)
    sim.run_for(2.0)
    writers.on = False
    sim.net.loss = 0.0
    sim.run_for(3.0)
    return sim, writers, t, done


@pytest.mark.parametrize("seed", [0, 1])
def test_sigterm_under_load_fails_no_write_and_slows_none(seed: int) -> None:
    """N3 hands off while 4 writers per node write: every write succeeds
    (N3's in flight ones too, its later ones go elsewhere), N3 leaves its
    slot within a round trip or so, and no write through N1 or N2 waits for
    N3's turns: their worst latency after the SIGTERM stays within their
    worst before it plus half a --fill."""
    sim, writers, t, done = _leave_under_load(seed, "sigterm")
    assert writers.failed == []
    assert done["left"] is True and done["pending"] == 0 and done["voting"] is False
    assert done["at"] - t < 0.1, done
    for sn in sim.live():
        assert "N3" not in sn.node.store.cal()
    before = writers.worst(t - 1.0, t, exclude="N3")
    after = writers.worst(t, t + 2.0, exclude="N3")
    assert after <= before + MARGIN, (before, after)
    # N3 took writes until the SIGTERM; its writers then went to N1.
    assert any(via == "N3" for _, _, _, via in writers.latency)
    assert any(home == "N3" and via == "N1" and i >= t for i, _, home, via in writers.latency)
    sim.check_acks()
    sim.check_recovers()


def test_the_same_measurement_catches_a_member_that_just_dies() -> None:
    """The bound above is not loose: a kill without hand-off makes some
    write through N1 or N2 wait for a dead owner's turn (--fill, then a
    revocation), and fails N3's writes in flight."""
    sim, writers, t, _ = _leave_under_load(0, "kill")
    before = writers.worst(t - 1.0, t, exclude="N3")
    after = writers.worst(t, t + 2.0, exclude="N3")
    assert after > before + MARGIN, (before, after)
    assert any(via == "N3" for _, via, _ in writers.failed)


@pytest.mark.parametrize("seed", [2, 3])
def test_sigterm_under_loss_keeps_agreement_and_every_acknowledged_write(seed: int) -> None:
    """3% of datagrams lost while N3 hands off and the others write:
    agreement, one log, no request applied twice (checked as it runs), every
    acknowledged write kept, and no write through N1 or N2 fails."""
    sim, writers, t, done = _leave_under_load(seed, "sigterm", loss=0.03)
    assert [f for f in writers.failed if f[1] != "N3"] == []
    assert done, "the hand-off did not end within its grace"
    sim.check_recovers()
    assert sim.nodes["N1"].node.store.cal() == ["N1", "N2"]


def test_two_members_sigtermed_at_once_leave_a_working_cluster() -> None:
    """N2 and N3 hand off at the same moment: each waits until it votes no
    more, so the gap instances that need one of them are decided before it
    goes; N1 alone is the cluster after, and takes writes."""
    sim = NodeSim(4, 3, timeout=60)
    sim.start()
    sim.run_for(3)
    n1, n2, n3 = (sim.nodes[x] for x in ("N1", "N2", "N3"))
    writers = Writers(sim, [n1], n1, clients=2, think=0.001)
    sim.run_for(0.5)
    done2: dict = {}
    done3: dict = {}
    _sigterm(sim, n2, done2)
    _sigterm(sim, n3, done3)
    sim.run_for(3.0)
    writers.on = False
    sim.run_for(1.0)
    assert writers.failed == []
    assert done2 and done3
    assert n1.node.store.cal() == ["N1"]
    sim.check_recovers()


def test_leave_empties_the_slot_stops_voting_and_claims_none_again() -> None:
    """``doozer leave``: the slot is emptied on every node, the node stops
    voting within the answer, stays a reader, and does not take the free
    slot back at its next chores."""
    sim = NodeSim(5, 3, timeout=60)
    sim.start()
    sim.run_for(3)
    n1, n3 = sim.nodes["N1"], sim.nodes["N3"]
    result: dict = {}
    n3.node.leaving.leave().addCallback(result.update)
    sim.run_for(0.5)
    assert result["voting"] is False and isinstance(result["rev"], int)
    slot = result["slot"]
    for sn in sim.live():
        assert dict(sn.node.store.cal_slots())[slot] == ""
    assert not n3.node.member and not n3.node.voting
    sim.run_for(3.0)  # several rounds of chores
    assert dict(n1.node.store.cal_slots())[slot] == ""
    sim.write(n1, "/after")
    sim.run_for(0.5)
    assert n3.node.store.get("/after").rev == n1.node.store.get("/after").rev
    with pytest.raises(DoozerError) as e:
        n3.node.leaving.leave()
    assert e.value.code == "NOENT"


def test_leave_is_refused_when_the_rest_would_have_no_quorum() -> None:
    """N2 is dead (still in its slot): without N3 the members left, N1 and
    N2, have one live of two, and the instances still open would need N3's
    vote. Refused at once, nothing proposed; N3 stays a voting member."""
    sim = NodeSim(6, 3, timeout=60)
    sim.start()
    sim.run_for(3)
    n2, n3 = sim.nodes["N2"], sim.nodes["N3"]
    sim.kill(n2)
    sim.run_for(5.0)  # N2 is no longer "heard lately"
    rev = n3.node.store.rev
    with pytest.raises(DoozerError) as e:
        n3.node.leaving.leave()
    assert e.value.code == "NO_QUORUM" and e.value.status == 409
    assert e.value.extra == {"members_left": 2, "live": 1, "quorum": 2}
    sim.run_for(0.5)
    assert "N3" in n3.node.store.cal() and n3.node.voting
    assert not n3.node.leaving.left
    # A SIGTERM then hands off without leaving: the slot stays.
    done: dict = {}
    _sigterm(sim, n3, done)
    sim.run_for(0.5)
    assert done["left"] is False
    assert "N3" in sim.nodes["N1"].node.store.cal()
    assert sim.nodes["N1"].node.store.rev >= rev


def test_the_only_member_cannot_leave() -> None:
    sim = NodeSim(7, 1, timeout=60)
    sim.start()
    sim.run_for(1)
    with pytest.raises(DoozerError) as e:
        sim.nodes["N1"].node.leaving.leave()
    assert e.value.code == "NO_QUORUM"
    assert e.value.extra["members_left"] == 0


def test_writes_are_refused_while_handing_off() -> None:
    """From the SIGTERM on, a new write is READONLY (not proposed: safe to
    send elsewhere), and /v1/self says the node is not writable."""
    sim = NodeSim(8, 3, timeout=60)
    sim.start()
    sim.run_for(3)
    n3 = sim.nodes["N3"]
    n3.node.leaving.hand_off()
    assert n3.node.info.self_info()["writable"] is False
    with pytest.raises(DoozerError) as e:
        n3.node.set("/x", b"1")
    assert e.value.code == "READONLY" and "shutting down" in e.value.detail
    with pytest.raises(DoozerError) as e:
        n3.node.leaving.leave()
    assert e.value.code == "READONLY"
