"""Removing silent members (doozer/node/node.py, membership chores).

Regression tests for liveness bugs the fault suite found (docs/testing.md,
"Bugs the fault suite found"): a member woken from SIGSTOP saw every other
member "silent" and emptied their slots, and a member removed a merely slow
peer while another was dead, leaving a CAL whose quorum needed the dead one
(the cluster then stopped for good).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from doozer.errors import DoozerError
from doozer.node.membership import CHORES_INTERVAL
from doozer.testing import single_node

TIMEOUT = 4.0


@pytest.fixture
def cluster(monkeypatch):
    """A node that believes it shares the CAL with PEERB and PEERC, and
    records the slot writes it proposes instead of proposing them."""
    clock = Clock()
    node = single_node(clock, timeout=TIMEOUT)
    removed: list[int] = []
    slots = [(0, node.id), (1, "PEERB"), (2, "PEERC")]
    monkeypatch.setattr(node.info, "slots", lambda: list(slots))
    real_get = node.store.get
    monkeypatch.setattr(
        node.store, "get", lambda p, *a, **k: SimpleNamespace(rev=5) if p.startswith("/ctl/cal/") else real_get(p, *a, **k)
    )

    writes: list[defer.Deferred] = []
    proposed: list[tuple] = []

    def internal_write(kind, path, value, rev=-1, compare=()):
        proposed.append((path, value, rev, compare))
        if path.startswith("/ctl/cal/") and value == b"":
            removed.append(int(path.rsplit("/", 1)[1]))
        d: defer.Deferred = defer.Deferred()
        writes.append(d)  # undecided until a test fires it
        return d.addErrback(lambda f: None)  # as Writes.internal: logged, not raised

    monkeypatch.setattr(node.writes, "internal", internal_write)
    return SimpleNamespace(node=node, clock=clock, removed=removed, writes=writes,
                           proposed=proposed, heard=node.sequencer.last_heard)


PEERS = ("PEERB", "PEERC")


def run(c, seconds: float, hear: tuple = (), says: dict | None = None) -> None:
    """Run the chores for ``seconds`` in small steps, hearing from ``hear``.

    Each peer heard pings its suspects: by default the other peers this
    node has not heard for --timeout (the network is the same for all),
    else what ``says`` gives for it.
    """
    end = c.clock.seconds() + seconds
    seq = c.node.sequencer
    while c.clock.seconds() < end:
        now = c.clock.seconds()
        for peer in hear:
            c.heard[peer] = now
        for peer in hear:
            if says is not None and peer in says:
                suspects = tuple(says[peer])
            else:
                suspects = tuple(
                    q for q in PEERS if q != peer and now - c.heard.get(q, float("-inf")) > TIMEOUT
                )
            seq.peer_suspects[peer] = (suspects, now)
        c.clock.advance(CHORES_INTERVAL / 2)


def test_a_dead_member_is_removed(cluster) -> None:
    """Baseline: PEERB silent for --timeout while PEERC talks: slot 1 is emptied."""
    run(cluster, 1, hear=("PEERB", "PEERC"))
    run(cluster, TIMEOUT + 1, hear=("PEERC",))
    assert cluster.removed == [1]


def test_a_removal_is_judged_when_it_is_applied(cluster) -> None:
    """Issue 15: a removal decided late (revoked, proposed again after the
    heal) must not remove a member that is back. It is conditioned on the
    rev of the member's applied record as it was when proposed, which the
    member rewrites when it is back."""
    run(cluster, 1, hear=("PEERB", "PEERC"))
    run(cluster, TIMEOUT + 1, hear=("PEERC",))
    [(path, value, rev, compare)] = [p for p in cluster.proposed if p[0] == "/ctl/cal/1"]
    assert (value, rev) == (b"", 5)
    assert compare == (("/ctl/node/PEERB/applied", 0),)


def test_a_member_suspected_by_a_peer_says_it_is_back(cluster) -> None:
    """A member whose peer's PING names it among its suspects records its
    applied rev at once (which fails a removal proposed while it was
    silent), and not again within timeout/4."""
    run(cluster, 1, hear=PEERS)
    before = len(cluster.proposed)
    me = cluster.node.id
    run(cluster, 1, hear=PEERS, says={"PEERB": (me,), "PEERC": ()})
    mine = [p for p in cluster.proposed[before:] if p[0] == f"/ctl/node/{me}/applied"]
    assert len(mine) == 1


def test_a_member_cut_off_says_it_is_back_when_it_hears_again(cluster) -> None:
    """A member that heard no other member for timeout/2 (a partition)
    records its applied rev once it hears one again."""
    me = cluster.node.id
    run(cluster, 1, hear=PEERS)
    run(cluster, TIMEOUT / 2 + 1)
    assert not [p for p in cluster.proposed if p[0] == f"/ctl/node/{me}/applied"]
    run(cluster, 1, hear=PEERS, says={"PEERB": (), "PEERC": ()})
    assert len([p for p in cluster.proposed if p[0] == f"/ctl/node/{me}/applied"]) == 1


def test_woken_from_sigstop_removes_nobody(cluster) -> None:
    """A node stopped for longer than --timeout (SIGSTOP, a starved CPU)
    wakes to find everybody's last message old: that is its own silence,
    not theirs. Found by the fault suite (pause fault): the woken member
    emptied both other slots."""
    run(cluster, 1, hear=("PEERB", "PEERC"))
    cluster.clock.advance(3 * TIMEOUT)  # one jump: the process was stopped
    run(cluster, 1)  # no news yet (the datagrams are still queued)
    assert cluster.removed == []
    # After a full timeout awake, a peer still silent is removed.
    run(cluster, TIMEOUT + 1, hear=("PEERC",))
    assert cluster.removed == [1]


def test_never_leaves_a_quorum_of_silent_members(cluster) -> None:
    """PEERB dead and PEERC slow (both silent): removing either would leave
    a CAL of two whose quorum needs a member that looks dead, and the
    cluster would stop for good. Nothing is removed until PEERC is heard;
    then the dead PEERB is."""
    run(cluster, 1, hear=("PEERB", "PEERC"))
    run(cluster, 2 * TIMEOUT)
    assert cluster.removed == []
    run(cluster, 1, hear=("PEERC",))
    assert cluster.removed == [1]


@pytest.mark.parametrize("code", ["FORBIDDEN", "UNAVAILABLE"])
def test_a_removal_that_failed_is_proposed_again(cluster, code: str) -> None:
    """Found by the fault suite (docs/testing.md, bug 5): each member kept
    the (slot, rev) of every removal it had proposed, for good. Both live
    members had once tried to remove a paused member and failed (refused
    as racing another removal); when that member later died, holding the
    same slot at the same rev, nobody removed it again and no new node
    could ever join."""
    run(cluster, 1, hear=("PEERB", "PEERC"))
    run(cluster, TIMEOUT + 1, hear=("PEERC",))
    assert cluster.removed == [1]  # once only while it is in flight
    cluster.writes[-1].errback(DoozerError(code, "the removal failed"))
    run(cluster, 1, hear=("PEERC",))
    assert cluster.removed == [1, 1]


def test_records_of_gone_nodes_are_deleted() -> None:
    """/ctl/node/<id> of a node that is not a member and silent for --timeout
    is deleted by the member in the lowest slot; a node heard lately stays."""
    from doozer.store import mutation

    clock = Clock()
    node = single_node(clock, timeout=TIMEOUT)
    for gone in ("GONE", "ALIVE"):
        node.writes.internal(mutation.SET, f"/ctl/node/{gone}/addr", b"127.0.0.1:1")
        node.writes.internal(mutation.SET, f"/ctl/node/{gone}/version", b"0")
    clock.advance(0)
    assert node.store.getdir("/ctl/node") == sorted(["ALIVE", "GONE", node.id])
    for _ in range(int((TIMEOUT + 2) / CHORES_INTERVAL) * 2):
        node.sequencer.last_heard["ALIVE"] = clock.seconds()
        clock.advance(CHORES_INTERVAL / 2)
    assert node.store.getdir("/ctl/node") == sorted(["ALIVE", node.id])


def test_a_directory_in_a_gone_nodes_record_does_not_stop_the_chores() -> None:
    """A peer may write below its own record (``/ctl/node/<id>/x/y``): the
    chores read the ``rev`` of a directory there, raised, and never ran
    again (no more removals of silent members, no more records kept)."""
    from doozer.store import mutation

    clock = Clock()
    node = single_node(clock, timeout=TIMEOUT)
    node.writes.internal(mutation.SET, "/ctl/node/GONE/addr", b"127.0.0.1:1")
    node.writes.internal(mutation.SET, "/ctl/node/GONE/odd/file", b"x")
    clock.advance(0)
    for _ in range(int((TIMEOUT + 2) / CHORES_INTERVAL) * 2):
        clock.advance(CHORES_INTERVAL / 2)
    assert node.store.getdir("/ctl/node/GONE") == ["odd"]  # its files are deleted
    assert node.membership._chores_call is not None  # and the chores go on


def test_a_node_forgotten_then_back_then_gone_is_forgotten_again() -> None:
    """The member in the lowest slot once kept, for good, the ids whose
    records it had deleted, and never deleted them again: a node that came
    back (it writes its record again) and then went for good kept its
    record forever."""
    from doozer.store import mutation

    clock = Clock()
    node = single_node(clock, timeout=TIMEOUT)

    def record(value: bytes) -> None:
        node.writes.internal(mutation.SET, "/ctl/node/AWAY/addr", value)
        clock.advance(0)

    def idle(seconds: float) -> None:
        for _ in range(int(seconds / CHORES_INTERVAL) * 2):
            clock.advance(CHORES_INTERVAL / 2)

    record(b"127.0.0.1:1")
    idle(TIMEOUT + 2)
    assert "AWAY" not in node.store.getdir("/ctl/node")
    node.sequencer.last_heard["AWAY"] = clock.seconds()  # it is back
    record(b"127.0.0.1:1")
    idle(TIMEOUT / 2)
    assert "AWAY" in node.store.getdir("/ctl/node")  # heard lately: kept
    idle(TIMEOUT + 2)  # gone again
    assert "AWAY" not in node.store.getdir("/ctl/node")


def test_chores_tell_the_sequencer_whom_this_node_suspects(cluster) -> None:
    """What the PINGs say: the members silent for --timeout."""
    run(cluster, 1, hear=PEERS)
    assert cluster.node.sequencer.suspects == ()
    run(cluster, TIMEOUT + 1, hear=("PEERC",), says={"PEERC": ()})
    assert cluster.node.sequencer.suspects == ("PEERB",)


def test_a_member_silent_to_this_node_only_is_not_removed(cluster) -> None:
    """A one-way loss: this node hears nothing from PEERB, but PEERC still
    hears it (its PINGs do not name PEERB). PEERB is alive and stays."""
    run(cluster, 1, hear=PEERS)
    run(cluster, 3 * TIMEOUT, hear=("PEERC",), says={"PEERC": ()})
    assert cluster.removed == []
    run(cluster, 1, hear=("PEERC",), says={"PEERC": ("PEERB",)})  # now PEERC agrees
    assert cluster.removed == [1]


def test_one_way_loss_and_a_death_together_remove_nobody(cluster) -> None:
    """Found by the fault suite (docs/testing.md, bug 7; the `oneway` fault
    with a kill): this node stopped hearing PEERB (one way: PEERB still
    heard it) just as PEERC died. PEERC's last message was half a second
    younger than PEERB's, so when PEERB had been silent for --timeout,
    PEERC still counted as alive, and this node removed PEERB, with
    PEERB's own vote. The CAL left, this node and the dead PEERC, could
    never decide anything again, not even after the network healed."""
    run(cluster, 1, hear=PEERS)
    run(cluster, 0.5, hear=("PEERC",), says={"PEERC": ()})  # PEERC's last words
    run(cluster, 3 * TIMEOUT)
    assert cluster.removed == []


def test_a_stale_confirmation_does_not_count(cluster) -> None:
    """PEERC said PEERB was silent, then fell silent itself: its word is
    older than a few pings by the time PEERB has been silent for
    --timeout here, and PEERC may be dead; nobody is removed."""
    run(cluster, 1, hear=PEERS)
    run(cluster, 0.5, hear=("PEERC",), says={"PEERC": ("PEERB",)})
    run(cluster, 3 * TIMEOUT)
    assert cluster.removed == []


def test_a_node_out_of_the_cal_names_no_suspects(cluster, monkeypatch) -> None:
    """Its list would only go stale: it no longer watches the members."""
    run(cluster, TIMEOUT + 1, hear=("PEERC",), says={"PEERC": ()})
    assert cluster.node.sequencer.suspects == ("PEERB",)
    monkeypatch.setattr(type(cluster.node), "member", property(lambda self: False))
    monkeypatch.setattr(cluster.node.membership, "_claim_free_slot", lambda: None)
    run(cluster, 1)
    assert cluster.node.sequencer.suspects == ()
