"""A node with a data dir (doozer/node/datadir.py): records written before
messages leave, a restart under the same id, snapshots and the log cut
behind them, refusals and a storage failure."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from doozer.errors import DoozerError
from doozer.consensus.durable import AcceptRec, DecidedRec, first_request_id
from doozer.node import Node, build_node
from doozer.node.datadir import DECIDED_DELAY, DataDir
from doozer.node.logfile import decode_payload
from doozer.node.snapshotfile import snapshot_seqns
from doozer.server.config import Config
from doozer.storage import segments
from doozer.storage.errors import DamagedStorage, ForeignDataDir
from doozer.storage.writer import SynchronousRunner, unpack_batch


class HeldRunner:
    """Runs each piece of work only when the test says so (an fsync in flight)."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Any, Deferred]] = []

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def __call__(self, work: Any) -> Deferred:
        d: Deferred = Deferred()
        self.waiting.append((work, d))
        return d

    def run_all(self) -> None:
        while self.waiting:
            work, d = self.waiting.pop(0)
            try:
                work()
            except Exception as e:  # noqa: BLE001
                d.errback(e)
            else:
                d.callback(None)


def durable_node(directory: str, clock: Clock, runner: Any = None, fsync: bool = False,
                 **settings: Any) -> Node:
    data = DataDir(directory, "local", fsync=fsync)
    data.open()
    data.start(clock, runner or SynchronousRunner())
    settings.setdefault("pulse", 0)
    node_id = data.identity.node_id if data.identity is not None else "NODEA"
    node = build_node(Config(**settings), clock, node_id, rng=random.Random(1), data=data)
    if data.restarting:
        node.storage.resume()
    else:
        node.start_genesis()
    return node


def settle(clock: Clock, runner: Any = None, rounds: int = 50) -> None:
    for _ in range(rounds):
        clock.advance(0)
        if isinstance(runner, HeldRunner):
            runner.run_all()
        clock.advance(0.01)


def test_a_write_is_decided_only_once_its_accept_is_on_disk(tmp_path: Any) -> None:
    clock, runner = Clock(), HeldRunner()
    node = durable_node(str(tmp_path), clock, runner)
    settle(clock, runner)
    revs: list[int] = []
    node.set("/x", b"1").addCallback(revs.append)
    for _ in range(5):
        clock.advance(0.01)
    assert revs == [] and runner.waiting  # the fsync has not returned
    settle(clock, runner)
    assert revs and node.store.get("/x").value == b"1"


def test_a_disk_far_behind_takes_no_more_peer_work_until_it_catches_up(
    tmp_path: Any, monkeypatch: Any
) -> None:
    """Records not yet fsynced and the messages held for them are bounded:
    while the disk is behind, peers' datagrams are dropped (they send them
    again); once the fsyncs return the node takes them again."""
    from doozer.consensus.messages import Ping
    from doozer.node import durability

    clock, runner = Clock(), HeldRunner()
    node = durable_node(str(tmp_path), clock, runner)
    settle(clock, runner)
    assert node.storage is not None
    monkeypatch.setattr(durability, "MAX_UNSYNCED", 1000)
    received: list = []
    sequencer = node.require_sequencer()
    monkeypatch.setattr(sequencer, "receive", lambda *a: received.append(a))
    for i in range(10):
        node.set(f"/x{i}", b"v" * 100)
        clock.advance(0.01)
    assert runner.waiting and node.storage.unsynced > 1000 and node.storage.backlogged
    ping = Ping(0, 0)
    node.peers.receive(node.id, ping)
    assert received == [] and node.counters["disk_backlog_dropped"] == 1
    runner.run_all()
    settle(clock, runner)
    assert node.storage.unsynced == 0 and not node.storage.backlogged
    node.peers.receive(node.id, ping)
    assert len(received) == 1


def test_many_held_messages_are_a_backlog_too(tmp_path: Any, monkeypatch: Any) -> None:
    from doozer.node import durability

    clock, runner = Clock(), HeldRunner()
    node = durable_node(str(tmp_path), clock, runner)
    settle(clock, runner)
    assert node.storage is not None
    monkeypatch.setattr(durability, "MAX_HELD", 0)
    node.set("/x", b"1")
    clock.advance(0.01)
    assert node.storage.backlogged  # its own ACCEPT waits for the fsync
    runner.run_all()
    settle(clock, runner)
    assert not node.storage.backlogged


def test_a_restart_keeps_the_id_bumps_the_incarnation_and_recovers_accepts(tmp_path: Any) -> None:
    clock = Clock()
    node = durable_node(str(tmp_path), clock)
    settle(clock)
    done: list[int] = []
    for i in range(5):
        node.set(f"/k{i}", b"v").addCallback(done.append)
    settle(clock)
    assert len(done) == 5
    node.stop()
    node.storage.data.stop()

    again = durable_node(str(tmp_path), Clock())
    assert again.id == "NODEA" and again.storage.data.incarnation == 2
    recovered = again.storage.data.recovered
    assert recovered is not None
    assert recovered.own_accepted_upto >= 1  # the accepts were on disk
    assert again.sequencer is not None and again.sequencer._cursor >= recovered.used_below()
    # D6: new request ids are above every id of incarnation 1
    assert again.writes._next_request >= first_request_id(2)
    clock2 = again.clock
    for _ in range(100):
        clock2.advance(0.05)
    assert all(again.store.get(f"/k{i}").value == b"v" for i in range(5))
    revs: list[int] = []
    again.set("/k0", b"new").addCallback(revs.append)
    for _ in range(20):
        clock2.advance(0.05)
    assert revs and again.store.get("/k0").value == b"new"


def test_snapshots_raise_the_floor_and_cut_the_log(tmp_path: Any) -> None:
    clock = Clock()
    data = DataDir(str(tmp_path), "local", fsync=False)
    data.open()
    data.start(clock, SynchronousRunner())
    node = build_node(Config(pulse=0, snapshot_every=5), clock, "NODEA",
                      rng=random.Random(1), data=data)
    node.start_genesis()
    settle(clock)
    data._log.segment_bytes = 2048  # rotate often
    for i in range(60):
        node.set(f"/k{i}", b"x" * 100)
        settle(clock, rounds=3)
    settle(clock)
    assert node.store.get("/k59").value == b"x" * 100
    assert data.collected > 0 and node.sequencer.durable.collectable == data.collected
    seqns = snapshot_seqns(str(tmp_path))
    assert seqns[-1] >= data.collected and seqns[0] > 0  # the genesis snapshot went
    assert segments.numbers(str(tmp_path))[0] > 1  # old segments deleted
    node.stop()
    data.stop()

    clock2 = Clock()
    again = durable_node(str(tmp_path), clock2)
    assert again.store.seqn >= data.collected  # from the newest snapshot
    assert again.storage.data.recovered.floor >= data.collected
    # the writes above the snapshot are decided again from the accepts on disk
    for _ in range(100):
        clock2.advance(0.05)
    assert again.store.get("/k59").value == b"x" * 100


def test_the_writer_s_batches_are_counted_and_summed_up_at_stop(tmp_path: Any) -> None:
    """Every synced batch reaches DataDir.stats (the consensus records in
    it counted); stopping logs one summary line."""
    from twisted.logger import formatEvent, globalLogPublisher

    clock = Clock()
    node = durable_node(str(tmp_path), clock)
    settle(clock)
    for i in range(3):
        node.set(f"/k{i}", b"v")
        settle(clock)
    stats = node.storage.data.stats
    writer = node.storage.data.writer
    assert stats.batches == writer.synced_batches > 0
    assert stats.fsync.count == stats.round_trip.count == stats.batches
    logged: list[str] = []

    def observe(event: Any) -> None:
        logged.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        node.stop()
        node.storage.data.stop()
        node.storage.data.stop()  # the line is logged once
    finally:
        globalLogPublisher.removeObserver(observe)
    lines = [line for line in logged if line.startswith("storage: ")]
    assert lines == [stats.summary()]
    found, _ = segments.recover(str(tmp_path), fsync=False)
    written = [decode_payload(p, "log") for s in found for r in s.records for p in unpack_batch(r)]
    assert stats.batches == sum(len(s.records) for s in found)
    assert stats.records == sum(len(recs) for recs in written)
    assert lines[0].startswith(f"storage: {stats.batches} batches, {stats.records} records")


def _records_on_disk(directory: str) -> list[Any]:
    found, _ = segments.recover(directory, fsync=False)
    return [rec for s in found for r in s.records for p in unpack_batch(r)
            for rec in decode_payload(p, "log")]


def test_a_restart_applies_the_decided_log_at_once(tmp_path: Any) -> None:
    """Each applied instance is written as a DecidedRec (riding with the next
    batch, or on its own after DECIDED_DELAY); a restart applies the run of
    them after its snapshot before it serves, without deciding them again."""
    directory = str(tmp_path)
    clock = Clock()
    node = durable_node(directory, clock)
    settle(clock)
    revs = {}
    for i in range(12):
        node.set(f"/k{i}", b"v%d" % i).addCallback(lambda rev, i=i: revs.__setitem__(i, rev))
        settle(clock, rounds=3)
    clock.advance(DECIDED_DELAY)
    decided = [r.seqn for r in _records_on_disk(directory) if type(r) is DecidedRec]
    assert decided == list(range(1, node.store.seqn + 1))  # the genesis snapshot is of 0
    seqn, rev = node.store.seqn, node.store.rev
    node.stop()
    node.storage.data.stop()

    again = durable_node(directory, Clock())  # resume, and not one turn of its clock
    assert (again.store.seqn, again.store.rev) == (seqn, rev)
    for i in range(12):
        assert again.store.get(f"/k{i}").rev == revs[i]
    assert again.sequencer is not None and again.sequencer._next_out == seqn + 1
    assert again.storage.data.recovered.decided == {}


def test_without_its_decided_log_a_restart_decides_the_instances_again(
        tmp_path: Any, monkeypatch: Any) -> None:
    """The decided log is for speed only: with none on disk (lost in a
    crash), or with a gap, the replay stops there and consensus decides the
    rest again from the accepts on disk, as before there was one."""
    directory = str(tmp_path)
    clock = Clock()
    real = DataDir.decided
    monkeypatch.setattr(DataDir, "decided", lambda self, seqn, items, outcomes=None:
                        None if seqn == 5 else real(self, seqn, items, outcomes))
    node = durable_node(directory, clock)
    settle(clock)
    for i in range(8):
        node.set(f"/k{i}", b"v")
        settle(clock, rounds=3)
    seqn, rev = node.store.seqn, node.store.rev
    assert seqn > 6
    node.stop()
    node.storage.data.stop()
    monkeypatch.setattr(DataDir, "decided", real)

    clock2 = Clock()
    again = durable_node(directory, clock2)
    assert again.store.seqn == 4  # the replay stopped at the gap
    for _ in range(100):
        clock2.advance(0.05)
    assert again.store.seqn >= seqn and again.store.rev >= rev
    assert all(again.store.get(f"/k{i}").value == b"v" for i in range(8))


def test_a_compaction_rewrites_decided_records_in_payloads_that_fit() -> None:
    """The rewrite at a compaction is cut by the records' real sizes: the
    decided log's records carry their items, and a payload over a log
    record's size would fail the writer (and stop the node)."""
    from doozer.node.logfile import COMPACT_CHUNK, rewrite_payloads
    from doozer.storage import records

    items = [b"x" * 300 for _ in range(10)]
    kept: list[Any] = [DecidedRec(s, items) for s in range(1, 2001)]
    kept += [AcceptRec(s, (0, "A"), b"v" * 500) for s in range(2001, 3001)]
    payloads = rewrite_payloads(kept)
    assert all(len(p) <= COMPACT_CHUNK + 4096 for p in payloads)
    assert all(len(p) < records.MAX_RECORD for p in payloads)
    assert [r for p in payloads for r in decode_payload(p, "log")] == kept


def test_records_of_one_pump_larger_than_a_log_record_go_in_several(tmp_path: Any) -> None:
    """A pump may make more records than one log record holds (many
    accepts of large values, with the decided log): they are written as
    several payloads, and the append fires only once the last is synced."""
    clock, runner = Clock(), HeldRunner()
    node = durable_node(str(tmp_path), clock, runner)
    settle(clock, runner)
    recs: list[Any] = [AcceptRec(1000 + i, (0, "X"), bytes([i]) * 60_000) for i in range(40)]
    fired: list[Any] = []
    node.storage.data.append(recs).addBoth(fired.append)
    clock.advance(0)
    batches = 0
    while runner.waiting:
        assert fired == []
        work, d = runner.waiting.pop(0)
        work()
        d.callback(None)
        batches += 1
        clock.advance(0)
    assert fired == [None] and batches >= 3
    node.stop()
    node.storage.data.stop()
    assert [r for r in _records_on_disk(str(tmp_path)) if type(r) is AcceptRec and r.seqn >= 1000] == recs


def test_a_data_dir_of_another_cluster_is_refused(tmp_path: Any) -> None:
    node = durable_node(str(tmp_path), Clock())
    node.storage.data.stop()
    other = DataDir(str(tmp_path), "other", fsync=False)
    with pytest.raises(ForeignDataDir, match="wipe the data dir"):
        other.open()


def test_a_missing_snapshot_is_damage(tmp_path: Any) -> None:
    node = durable_node(str(tmp_path), Clock())
    node.storage.data.stop()
    for seqn in snapshot_seqns(str(tmp_path)):
        os.unlink(os.path.join(str(tmp_path), f"snapshot-{seqn:016d}"))
    with pytest.raises(DamagedStorage, match="no snapshot"):
        DataDir(str(tmp_path), "local", fsync=False).open()


def test_a_failed_fsync_stops_the_node(tmp_path: Any) -> None:
    clock = Clock()
    node = durable_node(str(tmp_path), clock)
    settle(clock)
    fatal: list[str] = []
    node.on_fatal.append(fatal.append)

    def broken_sync() -> None:
        raise OSError(28, "No space left on device")

    node.storage.data._log.sync = broken_sync  # type: ignore[method-assign]
    failures: list[Any] = []
    node.set("/x", b"1").addErrback(failures.append)
    settle(clock)
    assert fatal and "No space left on device" in fatal[0]
    assert node.failed is not None and not node.running
    assert failures  # the write was never acknowledged
    with pytest.raises(DoozerError):
        node.store.get("/x")


def test_records_are_what_the_sequencer_names(tmp_path: Any) -> None:
    clock = Clock()
    node = durable_node(str(tmp_path), clock)
    settle(clock)
    node.set("/x", b"1")
    settle(clock)
    assert any(type(r) is AcceptRec and r.ballot == (0, "NODEA") for r in node.storage.data._live)


def test_a_snapshot_is_written_after_enough_bytes_of_records(tmp_path: Any, monkeypatch: Any) -> None:
    """The records since the last compaction are held in memory: a byte
    bound on them triggers a snapshot even when few instances passed."""
    import doozer.node.durability as durability_module

    monkeypatch.setattr(durability_module, "SNAPSHOT_BYTES", 4000)
    clock = Clock()
    data = DataDir(str(tmp_path), "local", fsync=False)
    data.open()
    data.start(clock, SynchronousRunner())
    node = build_node(Config(pulse=0, snapshot_every=1_000_000), clock, "NODEA",
                      rng=random.Random(1), data=data)
    node.start_genesis()
    settle(clock)
    first = data.snapshot_seqn
    for i in range(10):
        node.set(f"/big{i}", b"y" * 1000)
        settle(clock, rounds=3)
    assert data.snapshot_seqn > first and data.appended < 4000 + 2000


def _written_dir(tmp_path: Any) -> tuple[str, list[segments.Segment]]:
    """A data dir after a few acknowledged writes, the node stopped; its
    log's segments as read back."""
    directory = str(tmp_path / "data")
    clock = Clock()
    node = durable_node(directory, clock)
    settle(clock)
    for i in range(3):
        node.set(f"/k{i}", b"v")
        settle(clock)
    node.stop()
    node.storage.data.stop()
    found, torn = segments.recover(directory, fsync=False)
    assert torn is None and found and found[-1].records
    return directory, found


def test_a_log_cut_anywhere_in_its_last_batch_starts_from_the_batches_before(tmp_path: Any) -> None:
    """SPEC §8 "Damage": a crash mid-write leaves a torn last batch; cut at
    every byte offset of it, the node still starts, from the whole batches
    before it (the batch is cut whole, never half applied)."""
    import shutil

    directory, found = _written_dir(tmp_path)
    last = found[-1]
    size = os.path.getsize(last.path)
    start = last.contents.end - 8 - len(last.records[-1])  # its frame: length, crc
    assert start > 0 and last.contents.end == size
    before = [r for s in found for r in s.records][:-1]
    for offset in range(start, size):
        copy = str(tmp_path / f"cut{offset}")
        shutil.copytree(directory, copy)
        with open(os.path.join(copy, os.path.basename(last.path)), "r+b") as f:
            f.truncate(offset)
        node = durable_node(copy, Clock())  # starts: no exception
        assert node.id == "NODEA" and node.storage.data.incarnation == 2
        node.stop()
        node.storage.data.stop()
        again, torn = segments.recover(copy, fsync=False)
        assert torn is None  # cut at start-up, for good
        assert [r for s in again for r in s.records][: len(before)] == before
        shutil.rmtree(copy)


def test_a_preallocated_log_torn_anywhere_in_its_last_batch_starts_from_the_batches_before(
        tmp_path: Any) -> None:
    """With fsync the log's segment is preallocated: a crash mid-write
    leaves the start of the last batch and then zeros, not the end of the
    file. At every such cut the node starts from the whole batches before."""
    import shutil

    directory = str(tmp_path / "data")
    clock = Clock()
    node = durable_node(directory, clock, fsync=True)
    settle(clock)
    for i in range(3):
        node.set(f"/k{i}", b"v")
        settle(clock)
    node.stop()
    node.storage.data.stop()
    found, torn = segments.recover(directory, fsync=False)
    last = found[-1]
    end = last.contents.end
    assert torn is None and os.path.getsize(last.path) > end  # space ahead of the records
    start = end - 8 - len(last.records[-1])
    before = [r for s in found for r in s.records][:-1]
    for offset in range(start, end):
        copy = str(tmp_path / f"cut{offset}")
        shutil.copytree(directory, copy)
        with open(os.path.join(copy, os.path.basename(last.path)), "r+b") as f:
            f.seek(offset)
            f.write(bytes(end - offset))
        again = durable_node(copy, Clock())  # starts: no exception
        assert again.id == "NODEA" and again.storage.data.incarnation == 2
        again.stop()
        again.storage.data.stop()
        read, torn = segments.recover(copy, fsync=False)
        assert torn is None
        assert [r for s in read for r in s.records][: len(before)] == before
        shutil.rmtree(copy)


def test_a_flipped_bit_before_good_records_refuses_to_start(tmp_path: Any) -> None:
    """Damage that is not a torn tail (a flipped bit in a record followed by
    good ones) refuses with one line naming the file and what to do."""
    directory, found = _written_dir(tmp_path)
    seg = found[-1]
    assert len(seg.records) >= 2
    with open(seg.path, "r+b") as f:
        f.seek(16 + 8 + 2)  # inside the first record's payload (after header and frame)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(DamagedStorage) as caught:
        DataDir(directory, "local", fsync=False).open()
    message = str(caught.value)
    assert os.path.basename(seg.path) in message and "wipe" in message and "\n" not in message
