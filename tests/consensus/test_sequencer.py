"""The sequencer itself (doozer/consensus/sequencer.py) fed by hand: propose,
flush and tick, batching and the window, memberships and the skips a change
brings, stats, and what the sans-I/O core imports and carries. Its
collaborators have their own modules (test_acceptor, test_proposer,
test_decided, test_revoker, test_catchup, test_early).

Genesis ``a, b, c``: instance s is owned by ``M[s % 3]``, so ``b`` owns
1, 4, 7 ..., ``c`` owns 2, 5, 8 ... and ``a`` owns 3, 6, 9 ...
"""

from __future__ import annotations

import pytest
from sequtil import ABC, seq, sent

from doozer.consensus.messages import Ping, Skip
from doozer.consensus.value import encode_batch


def test_one_member_decides_in_one_flush_without_network() -> None:
    """A one-member cluster decides at flush, and sends nothing."""
    s = seq("a", ["a"])
    s.propose(b"x", 0.0)
    s.flush(0.0)
    assert s.take_outbox() == []
    assert s.take_decided() == [(1, [b"x"])]


def test_proposals_of_one_turn_share_an_instance() -> None:
    """Everything proposed before a flush goes into one instance, in order."""
    s = seq("a", ["a"])
    for i in range(10):
        s.propose(b"%d" % i, 0.0)
    s.tick(0.0)
    assert s.take_decided() == [(1, [b"%d" % i for i in range(10)])]


def test_batch_cut_before_size_limit() -> None:
    """Items beyond the value limit go into the next instance."""
    s = seq("a", ["a"], max_value=2000)
    for i in range(6):
        s.propose(bytes([i]) * 500, 0.0)
    s.flush(0.0)
    decided = s.take_decided()
    assert len(decided) > 1
    assert [i for _, items in decided for i in items] == [bytes([i]) * 500 for i in range(6)]
    assert all(len(encode_batch(items)) <= 2000 for _, items in decided)


def test_oversized_item_refused() -> None:
    """An item that cannot fit in any instance raises ValueError."""
    with pytest.raises(ValueError):
        seq("a", ["a"], max_value=1000).propose(b"x" * 1000, 0.0)


def test_propose_only_queues() -> None:
    """propose() sends and decides nothing until flush or tick."""
    s = seq("a", ["a"])
    s.propose(b"x", 0.0)
    assert s.take_decided() == [] and s.next_wakeup() == 0.0


def test_window_limits_one_member() -> None:
    """Without set_members the one-member window is alpha instances."""
    s = seq("a", ["a"], alpha=3, max_value=2000)
    for i in range(10):
        s.propose(bytes([i]) * 1200, 0.0)
    s.flush(0.0)
    assert [n for n, _ in s.take_decided()] == [1, 2, 3]
    assert s.next_wakeup() != 0.0  # blocked: no busy loop
    s.set_members(4, ["a"])
    s.flush(0.0)
    assert [n for n, _ in s.take_decided()] == [4]


def test_a_membership_change_skips_the_members_unused_instances() -> None:
    """The voting gap (issue 15, failure 3): when M changes at seqn t, every
    member skips its own unused instances below t at once, so the new
    membership counts after one round trip, not after alpha writes."""
    s = seq("a", alpha=10)
    s.set_members(11, ["a", "b", "c", "d"])
    s.flush(0.0)
    skips = [m for _, m in sent(s, Skip)]
    assert skips and all(m.owner == "a" and m.upto == 11 for m in skips)
    assert s.counters["membership_skips"] == 1
    for t in range(1, 11):
        if t % 3 == 0:
            assert t in s._decided
    same = seq("a", alpha=10)
    same.set_members(11, ABC)  # no change: nothing skipped
    same.flush(0.0)
    assert sent(same, Skip) == []
    outsider = seq("d", alpha=10)  # joins at 11: owns nothing before
    outsider.set_members(11, ["a", "b", "c", "d"])
    outsider.flush(0.0)
    assert sent(outsider, Skip) == []


def test_members_after_gives_the_snapshots_memberships() -> None:
    """members_after(s) is M(s+1 .. s+alpha), what a snapshot at s carries."""
    s = seq("a", alpha=3)
    assert s.members_after(0) == {1: ABC, 2: ABC, 3: ABC}
    with pytest.raises(LookupError):
        s.members_after(1)  # M(4) is not known yet
    s.set_members(4, ["a", "b"])
    assert s.members_after(1)[4] == ["a", "b"]


def test_set_members_changes_owners() -> None:
    """M(s+alpha) set after applying s decides who owns and votes."""
    s = seq("a", alpha=2)
    s.set_members(3, ["a", "b"])
    assert s.members(3) == ("a", "b") and s.is_member(3)
    s.set_members(3, ["x"])  # the first value wins
    assert s.counters["members_conflict"] == 1


def test_stats_report_last_heard() -> None:
    """Every message counts as a heartbeat in last_heard."""
    s = seq("a")
    s.receive("b", Ping(0, 0), 3.5)
    st = s.stats()
    assert st["last_heard"] == {"b": 3.5} and st["decided"] == 0 and st["member"]


def test_core_never_imports_twisted_internet() -> None:
    """The sans-I/O core loads without twisted.internet (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys, doozer.consensus.sequencer, doozer.consensus.messages; "
        "sys.exit(any(m.startswith('twisted.internet') for m in sys.modules))"
    )
    import os

    import doozer

    root = os.path.dirname(os.path.dirname(os.path.abspath(doozer.__file__)))
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_largest_write_fits_one_datagram() -> None:
    """A 60,000-byte body with its path is accepted, and its ACCEPT fits in a datagram."""
    from doozer.store import mutation
    from doozer.consensus.transport import MAX_DATAGRAM, UDPTransport

    item = mutation.set_("N" * 16, 1, "/" + "p" * 1000, b"v" * 60_000, until=2**40).encode()
    s = seq("b")
    s.propose(item, 0.0)
    s.flush(0.0)
    t = UDPTransport(cluster_name="c" * 64, cluster_id="i" * 32, node_id="b" * 64, deliver=print, key=b"k")
    for _, msg in s.take_outbox():
        assert len(t.frame(msg)) <= MAX_DATAGRAM
