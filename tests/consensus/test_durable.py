"""The durable mode of the sequencer (CONSENSUS.md §D) and its simulation.

Unit tests pin the interface (records out, messages held in order until
``synced``, restart from :class:`Recovered`); the simulation runs durable
clusters through crash-restarts (one node, a majority, all of them) and
shows, for each rule of §D, that dropping it makes a check fail (the rule
is dropped by the test-side subclass :class:`simunsafe.UnsafeDurability`;
the product has no switch for it).

``DOOZER_DURABLE_SEEDS`` sets the seeds per cluster size of the clean run
(default 400, times 1, 3 and 5 nodes).
"""

from __future__ import annotations

import os
import random

import pytest

import sim
from doozer.consensus import durable as dur
from doozer.consensus.messages import Accept, Accepted, Learn, Ping, Prepare, Promise, Skip
from doozer.consensus.sequencer import Sequencer

SEEDS = int(os.environ.get("DOOZER_DURABLE_SEEDS", "400"))
FIRST = int(os.environ.get("DOOZER_SIM_FIRST_SEED", "0"))


def _seq(node_id: str = "a", genesis: tuple = ("a", "b", "c"), **kw) -> Sequencer:
    return Sequencer(node_id, genesis=genesis, alpha=4, rng=random.Random(1),
                     durable=kw.pop("durable", dur.Durability(1)), **kw)


# -- the interface ------------------------------------------------------------


def test_memory_only_mode_is_unchanged() -> None:
    """Without ``durable`` nothing is recorded or held."""
    seq = Sequencer("a", genesis=("a", "b", "c"), alpha=4, rng=random.Random(1))
    seq.propose(b"x", 0.0)
    seq.flush(0.0)
    assert seq.durable is None
    assert any(type(m) is Accept for _, m in seq.take_outbox())


def test_owner_accept_is_recorded_before_its_accept_leaves() -> None:
    """D3: the own accept is a record; without a reservation R on disk
    that covers the instance, ACCEPT and ACCEPTED wait for it."""
    seq = _seq()
    seq.propose(b"x", 0.0)
    seq.flush(0.0)
    assert seq.take_outbox() == []
    token, records = seq.take_records()
    # R reaches a window past the end of this one (seqn 4 + alpha 4)
    assert records == [dur.ReserveRec(8), dur.AcceptRec(3, (0, "a"), records[1].value)]
    seq.synced(token, 0.0)
    out = seq.take_outbox()
    assert [type(m) for _, m in out if type(m) is Accept] and all(
        type(m) in (Accept, Accepted) for _, m in out
    )
    assert {d for d, m in out if type(m) is Accept} == {"b", "c"}


def test_with_r_on_disk_the_accept_leaves_before_its_own_accept_is_durable() -> None:
    """The reservation R (CONSENSUS §D): once it is synced, the owner's
    ACCEPTs at or below it leave at once; its own ACCEPTED (its vote, to
    itself and the others) still waits for the accept's fsync."""
    seq = Sequencer("a", genesis=("a", "b", "c"), alpha=12, rng=random.Random(1),
                    durable=dur.Durability(1))
    seq.propose(b"x", 0.0)
    seq.flush(0.0)
    token, _ = seq.take_records()
    seq.synced(token, 0.0)  # R (the window's end + alpha) is durable
    assert seq.durable is not None and seq.durable.reserved >= 12
    seq.take_outbox()
    seq.propose(b"y", 0.0)
    seq.flush(0.0)
    out = seq.take_outbox()
    accepts = [(d, m) for d, m in out if type(m) is Accept]
    assert sorted(d for d, _ in accepts) == ["b", "c"]
    assert all(m.seqn <= seq.durable.reserved for _, m in accepts)
    assert not [m for _, m in out if type(m) is Accepted]
    token, records = seq.take_records()
    assert [type(r) for r in records] == [dur.AcceptRec]
    seq.synced(token, 0.0)
    assert {d for d, m in seq.take_outbox() if type(m) is Accepted} == {"b", "c"}


def test_r_is_only_counted_once_synced_and_keeps_ahead() -> None:
    d = dur.Durability(1)
    d.reserve(3, 8)
    assert d.reserved == 0
    token, records = d.take_records()
    assert records == [dur.ReserveRec(8)]
    d.released(token)
    assert d.reserved == 8
    d.reserve(4, 9)  # plenty left: no new record
    assert d.take_records()[1] == []
    d.reserve(7, 12)  # less than half of the step (5) is left
    assert d.take_records()[1] == [dur.ReserveRec(12)]
    assert d.reserved == 8


def test_a_restart_never_uses_ballot_0_at_or_below_r() -> None:
    """After a restart the owner's instances up to the durable R count as
    used (its ACCEPT may have left with its own accept lost), and it waits
    on them, so that they are revoked if need be."""
    rec = dur.Recovered.replay("a", 2, [dur.ReserveRec(12), dur.AcceptRec(3, (0, "a"), b"v")])
    assert rec.used_below() == 13
    seq = _seq(durable=dur.Durability(2, rec))
    assert seq._cursor == 13
    assert seq._frontier >= 13
    assert dur.compact([dur.ReserveRec(12), dur.ReserveRec(20), dur.AcceptRec(3, (0, "a"), b"v")], 5) \
        == [dur.ReserveRec(20)]


def test_one_member_cluster_decides_only_after_the_fsync() -> None:
    """The own vote counts only once it is durable: a one-member cluster
    decides nothing before ``synced``."""
    seq = _seq(genesis=("a",))
    seq.propose(b"x", 0.0)
    seq.flush(0.0)
    assert seq.take_decided() == []
    token, records = seq.take_records()
    # nobody to send an early ACCEPT to: no reservation to revoke at a restart
    assert [type(r) for r in records] == [dur.AcceptRec]
    seq.synced(token, 0.0)
    assert seq.take_decided() == [(1, [b"x"])]


def test_promise_is_recorded_and_held_in_order() -> None:
    """D1, and order: a PROMISE repeated in a later turn waits for the
    record of the earlier turn it reveals; PING and LEARN never wait."""
    seq = _seq(node_id="b")
    seq.receive("c", Prepare((3,), (1, "c")), 0.0)
    seq.receive("c", Prepare((3,), (1, "c")), 0.0)  # repeated: no new record
    seq.tick(1.0)  # heartbeats are due
    token, records = seq.take_records()
    assert records == [dur.PromiseRec(3, (1, "c"))]
    assert {type(m) for _, m in seq.take_outbox()} == {Ping}
    seq.synced(token, 1.0)
    assert [type(m) for _, m in seq.take_outbox()] == [Promise, Promise]


def test_skip_horizon_is_recorded_before_the_skip() -> None:
    """D4; and the owner's own range is decided only once it is durable."""
    seq = _seq(node_id="a")
    seq.receive("b", Accept(4, (0, "b"), b"\x90"), 0.0)
    seq.flush(0.0)
    token, records = seq.take_records()
    assert dur.SkipRec(4) in records
    assert not any(type(m) is Skip for _, m in seq.take_outbox())
    assert 3 not in seq._decided
    seq.synced(token, 0.0)
    assert any(type(m) is Skip for _, m in seq.take_outbox())
    assert 3 in seq._decided


def test_learn_never_waits() -> None:
    seq = _seq(node_id="b")
    seq.receive("c", Prepare((3,), (1, "c")), 0.0)
    seq.receive("c", Learn(1, b"\x90"), 0.0)
    seq.take_decided()
    seq.receive("c", Accept(1, (0, "b"), b"\x90"), 0.0)  # decided: answered with LEARN
    assert [type(m) for _, m in seq.take_outbox()] == [Learn]


def test_ballots_carry_the_incarnation() -> None:
    """D5: incarnation i prepares with k in ((i-1)K, iK]."""
    d = dur.Durability(3)
    assert d.ballot_floor() == 2 * dur.BALLOT_SPAN
    assert dur.first_request_id(2) == 2 * dur.REQUEST_SPAN


def test_restart_treats_own_instances_as_used_and_restores_acceptors() -> None:
    """D3 after a restart, and acceptor state applied as instances enter
    the window (here one beyond it at first)."""
    records = [
        dur.AcceptRec(3, (0, "a"), b"\x91\xa1x"),
        dur.PromiseRec(9, (5, "b")),
        dur.SkipRec(6),
    ]
    rec = dur.Recovered.replay("a", 2, records)
    assert rec.used_below() == 6
    seq = _seq(durable=dur.Durability(2, rec))
    assert seq._cursor == 6
    inst = seq._inst(3)
    assert inst is not None and inst.accepted_value == b"\x91\xa1x"
    assert 9 in rec.acceptors  # beyond the window (alpha 4): kept for later
    for s in range(1, 6):
        seq.set_members(s + 4, ("a", "b", "c"))
    seq._next_out = 6  # as if handed out
    assert seq._inst(9).promised == (5, "b")  # type: ignore[union-attr]


def test_floor_is_collectable_only_once_synced() -> None:
    """D7: records at or below a floor go only after its record is synced."""
    d = dur.Durability(1)
    d.raise_floor(10)
    token, records = d.take_records()
    assert records == [dur.FloorRec(10)] and d.collectable == 0
    d.released(token)
    assert d.collectable == 10
    kept = dur.compact([dur.PromiseRec(4, (1, "b")), dur.PromiseRec(12, (1, "b")),
                        dur.SkipRec(5), dur.FloorRec(10)], 10)
    assert kept == [dur.PromiseRec(12, (1, "b")), dur.SkipRec(5), dur.FloorRec(10)]


def test_records_round_trip() -> None:
    for record in (dur.PromiseRec(1, (2, "a")), dur.AcceptRec(3, (0, "b"), b"v"),
                   dur.SkipRec(7), dur.FloorRec(9), dur.DecidedRec(4, [b"x", b""]),
                   dur.DecidedRec(5, []), dur.ReserveRec(12)):
        assert dur.decode_record(list(dur.encode_record(record))) == record


@pytest.mark.parametrize("data", [[6, "9"], [6], [3, None], [4, True], [1, 2.0, [1, "a"]],
                                  [2, [3], [0, "a"], b"v"], [5, "4", []]])
def test_a_record_whose_instance_number_is_no_integer_is_refused(data: list) -> None:
    """A log record that passed its CRC but holds no integer where the
    instance number goes (a reservation, a skip horizon, a floor, a seqn) is
    refused as damage when read, not taken into the restart's state."""
    from doozer.node.logfile import decode_payload
    from doozer.storage import records
    from doozer.storage.errors import DamagedStorage

    with pytest.raises(TypeError):
        dur.decode_record(data)
    with pytest.raises(DamagedStorage, match="holds no consensus records"):
        decode_payload(records.pack([data]), "log")


@pytest.mark.parametrize("items", [[b"x", "y"], b"xy", None, [1]])
def test_a_decided_record_holds_byte_strings(items: object) -> None:
    with pytest.raises(TypeError):
        dur.decode_record([5, 4, items])


def test_decided_records_above_the_floor_make_the_run_after_a_seqn() -> None:
    """The decided log (no rule of §D): kept above the floor only, read back
    as the run of instances right after a seqn, up to the first gap."""
    records = [dur.DecidedRec(s, [b"%d" % s]) for s in (3, 4, 5, 7, 8)]
    rec = dur.Recovered.replay("a", 2, [*records, dur.FloorRec(3), dur.DecidedRec(2, [b"old"])])
    assert sorted(rec.decided) == [4, 5, 7, 8]
    assert rec.decided_after(3) == [(4, [b"4"]), (5, [b"5"])]
    assert rec.decided_after(6) == [(7, [b"7"]), (8, [b"8"])]
    assert rec.decided_after(8) == [] and rec.decided_after(1) == []
    rec.forget_upto(7)
    assert sorted(rec.decided) == [8]
    assert rec.used_below() == 8  # a decision is no own accept: D3 is unchanged
    kept = dur.compact(records + [dur.FloorRec(4)], 4)
    assert kept == [dur.DecidedRec(5, [b"5"]), dur.DecidedRec(7, [b"7"]), dur.DecidedRec(8, [b"8"]),
                    dur.FloorRec(4)]


# -- the simulation -----------------------------------------------------------


def _failures(run, seeds, sizes=(1, 3, 5), unsafe=frozenset()) -> list[str]:
    out = []
    for seed in seeds:
        for n in sizes:
            try:
                run(seed, n, unsafe=unsafe)
            except sim.Violation as e:
                out.append(f"{e} (replay: sim.{run.__name__}({seed}, {n}, unsafe={set(unsafe) or None}))")
    return out


@pytest.mark.parametrize("chunk", range(max(1, SEEDS // 40)))
def test_durable_crash_restarts_keep_every_invariant(chunk: int) -> None:
    """One node, a majority or the whole cluster crash and restart from
    their synced records only; agreement, acknowledged writes, no request
    twice, no request id for two requests all hold."""
    start = FIRST + chunk * 40
    failures = _failures(sim.durable_scenario, range(start, start + 40))
    assert not failures, "\n".join(failures)


def test_promise_amnesia_schedule_is_clean_with_every_rule() -> None:
    failures = _failures(lambda seed, n, unsafe: sim.promise_amnesia(seed, unsafe),
                         range(FIRST, FIRST + 300), sizes=(3,))
    assert not failures, "\n".join(failures)


def _first_failure(run, rule: str, seeds: int, sizes=(1, 3, 5)) -> str:
    for seed in range(seeds):
        for n in sizes:
            try:
                run(seed, n, unsafe=frozenset([rule]))
            except sim.Violation as e:
                return str(e)
    return ""


#: rule -> seeds (of 1, 3 and 5 nodes each) within which dropping it fails;
#: docs/testing.md has the table with how many it took.
RULE_DROPS = [("D2", 5), ("D3", 40), ("D4", 5), ("D6", 5), ("D7", 5), ("own-vote", 5), ("R", 40), ("R-sync", 40)]


@pytest.mark.parametrize("rule,seeds", RULE_DROPS)
def test_dropping_a_rule_is_caught(rule: str, seeds: int) -> None:
    """Each §D rule dropped on its own makes the simulation fail."""
    assert _first_failure(sim.durable_scenario, rule, seeds), f"dropping {rule} went unnoticed"


def test_dropping_d1_is_caught_by_its_schedule() -> None:
    """D1: an acceptor that forgets its promise in a crash lets two values
    be chosen (promise_amnesia; the random runs rarely line it up)."""
    found = _first_failure(lambda seed, n, unsafe: sim.promise_amnesia(seed, unsafe), "D1", 300, (3,))
    assert "two values chosen" in found


@pytest.mark.slow
def test_durable_crash_restarts_soak() -> None:
    failures = _failures(sim.durable_scenario, range(FIRST + 1000, FIRST + 2000))
    assert not failures, "\n".join(failures)
