"""Tests for doozer.storage.writer with a syncer: batches written by the
syncer, the rare work by the runner, and never both at once."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from typing import Optional

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock

from doozer.storage import records, segments
from doozer.storage.errors import StorageFailed
from doozer.storage.syncer import Syncer, available
from doozer.storage.writer import State, ThreadRunner, Writer, unpack_batch
from writerutil import FakeSink, ManualRunner, outcome


class PlanningSink(FakeSink):
    """A fake sink that plans every record (``plan=False``: none), at
    offsets counted as a file's would be."""

    def __init__(self) -> None:
        super().__init__()
        self.planned: list[bytes] = []
        self.offset = 0
        self.plans = True

    def plan(self, payload: bytes) -> Optional[tuple[int, bytes, int]]:
        if not self.plans:
            return None
        self.planned.append(payload)
        offset, self.offset = self.offset, self.offset + len(payload)
        return 7, payload, offset


class FakeSyncer:
    """Holds each write until the test answers it."""

    max_data = 1 << 16

    def __init__(self) -> None:
        self.running = True
        self.writes: list[tuple[int, bytes, int, Deferred[float]]] = []

    def write(self, fd: int, data: bytes, offset: int, path: str) -> Deferred[float]:
        done: Deferred[float] = Deferred()
        self.writes.append((fd, data, offset, done))
        return done

    def answer(self, error: Optional[OSError] = None) -> None:
        *_, done = self.writes.pop(0)
        if error is None:
            done.callback(0.001)
        else:
            done.errback(error)


def writer_with(sink: FakeSink) -> tuple[Writer, ManualRunner, FakeSyncer, Clock]:
    clock, runner, syncer = Clock(), ManualRunner(), FakeSyncer()
    writer = Writer(sink, runner, clock, syncer=syncer)  # type: ignore[arg-type]
    writer.start()
    return writer, runner, syncer, clock


def test_a_planned_batch_goes_to_the_syncer_and_fires_when_it_answers() -> None:
    sink = PlanningSink()
    writer, runner, syncer, clock = writer_with(sink)
    appends = [outcome(writer.append(b"a")), outcome(writer.append(b"b"))]
    clock.advance(0)
    assert runner.waiting == [] and len(syncer.writes) == 1
    fd, data, offset, _ = syncer.writes[0]
    assert (fd, offset) == (7, 0) and unpack_batch(data) == [b"a", b"b"]
    assert appends == [[], []] and writer.state is State.WRITING
    syncer.answer()
    assert appends == [[None], [None]] and writer.state is State.IDLE


def test_a_batch_the_sink_cannot_plan_goes_to_the_runner() -> None:
    sink = PlanningSink()
    sink.plans = False  # a new segment, space to allocate
    writer, runner, syncer, clock = writer_with(sink)
    done = outcome(writer.append(b"a"))
    clock.advance(0)
    assert syncer.writes == [] and len(runner.waiting) == 1
    runner.finish()
    assert done == [None] and sink.batches() == [[b"a"]]


def test_work_handed_over_during_a_synced_batch_waits_for_it() -> None:
    """Compaction or a snapshot must not write while a batch is in flight
    elsewhere: a crash would leave records after a torn one."""
    sink = PlanningSink()
    writer, runner, syncer, clock = writer_with(sink)
    writer.append(b"a")
    clock.advance(0)
    ran: list[str] = []
    work = outcome(writer.call(lambda: ran.append("work")))
    assert runner.waiting == []  # held while the syncer writes
    syncer.answer()
    assert len(runner.waiting) == 1
    runner.finish()
    assert ran == ["work"] and work == [None]


def test_a_batch_flushed_while_the_runner_works_goes_to_the_runner_behind_it() -> None:
    """The runner runs in order: a batch behind its work goes to it, not
    to the syncer, which would write at the same time."""
    sink = PlanningSink()
    writer, runner, syncer, clock = writer_with(sink)
    order: list[str] = []
    writer.call(lambda: order.append("work"))
    done = outcome(writer.append(b"a"))
    clock.advance(0)
    assert syncer.writes == [] and len(runner.waiting) == 2
    runner.finish()
    runner.finish()
    assert order == ["work"] and done == [None] and sink.batches() == [[b"a"]]
    writer.append(b"b")  # the runner is idle again: back to the syncer
    clock.advance(0)
    assert len(syncer.writes) == 1


def test_a_failed_synced_write_fails_the_writer_and_the_work_that_waited() -> None:
    sink = PlanningSink()
    failures: list[StorageFailed] = []
    clock, runner, syncer = Clock(), ManualRunner(), FakeSyncer()
    writer = Writer(sink, runner, clock, on_failure=failures.append,
                    syncer=syncer)  # type: ignore[arg-type]
    first = outcome(writer.append(b"a"))
    clock.advance(0)
    work = outcome(writer.call(lambda: None))
    later = outcome(writer.append(b"b"))
    syncer.answer(OSError(errno.EIO, "EIO"))
    assert writer.state is State.FAILED and len(failures) == 1
    for out in (first, work, later):
        assert out[0].check(StorageFailed)
    assert runner.waiting == []


def test_a_syncer_not_running_leaves_every_batch_to_the_runner() -> None:
    sink = PlanningSink()
    writer, runner, syncer, clock = writer_with(sink)
    syncer.running = False
    writer.append(b"a")
    clock.advance(0)
    assert syncer.writes == [] and len(runner.waiting) == 1 and sink.planned == []


def test_a_batch_too_large_for_the_syncer_goes_to_the_runner() -> None:
    sink = PlanningSink()
    writer, runner, syncer, clock = writer_with(sink)
    syncer.max_data = 100
    writer.append(b"x" * 200)
    clock.advance(0)
    assert syncer.writes == [] and len(runner.waiting) == 1


@pytest.mark.skipif(not available(), reason="needs Linux's sockets")
@pytest_twisted.ensureDeferred
async def test_batches_by_the_child_and_by_the_thread_read_back_in_order(tmp_path: Path) -> None:
    """The real log, the real child and thread: small segments rotate (the
    thread's work) between batches the child writes at their offsets, and
    compaction-like work runs in between; every record reads back once,
    in order, and the file's own offset never overwrites a planned one."""
    from twisted.internet import reactor

    directory = str(tmp_path)
    log = segments.SegmentedLog(directory, [], fsync=True, segment_bytes=4096,
                                preallocate=1024)
    runner = ThreadRunner(reactor, name="syncer-test")

    class Counted(Syncer):
        writes = 0

        def write(self, fd: int, data: bytes, offset: int, path: str) -> Deferred[float]:
            self.writes += 1
            return super().write(fd, data, offset, path)

    syncer = Counted(reactor)
    syncer.start()
    writer = Writer(log, runner, reactor, syncer=syncer)
    writer.start()
    synced: list[int] = []
    writer.observers.append(lambda batch: synced.append(batch.payloads))
    sent: list[bytes] = []
    for round_ in range(40):
        payloads = [b"%d-%d-" % (round_, n) + b"x" * (97 * n) for n in range(4)]
        sent += payloads
        appends = [writer.append(p) for p in payloads]
        if round_ % 7 == 3:
            await writer.call(lambda: None)
        await DeferredList(appends, fireOnOneErrback=True)
    await writer.stop()
    syncer.stop()
    found, torn = segments.recover(directory)
    assert torn is None and len(found) > 5  # rotated many times
    read = [p for s in found for r in s.records for p in unpack_batch(r)]
    assert read == sent
    assert sum(synced) == len(sent)
    assert 0 < syncer.writes < 40  # most batches by the child, the rest by the thread


def test_plan_needs_a_file_that_syncs_each_write(tmp_path: Path) -> None:
    """Without O_DSYNC (``--unsafe-no-fsync``, or a sync after the write) a
    record is not planned: the writer's thread appends it."""
    path = str(tmp_path / "f")
    records.create(path, fsync=False)
    appender = records.Appender.open(path, records.recover(path), fsync=False)
    assert appender.plan(b"x") is None
    appender.close()


def test_plan_leaves_allocation_to_the_thread(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    records.create(path)
    appender = records.Appender.open(path, records.recover(path), preallocate=64)
    assert appender.plan(b"x") is None  # nothing allocated yet
    appender.append(b"first")  # allocates 64 bytes ahead
    planned = appender.plan(b"second")
    assert planned is not None
    fd, data, offset = planned
    assert data == records.frame(b"second", appender.salt)
    assert appender.plan(b"y" * 100) is None  # past what is allocated
    import os
    os.pwrite(fd, data, offset)
    appender.append(b"third")  # at its place after the planned one
    appender.close()
    assert records.recover(path, zero_tail=True).records == [b"first", b"second", b"third"]


@pytest.mark.skipif(not available(), reason="needs Linux's sockets")
@pytest_twisted.ensureDeferred
async def test_the_thread_takes_over_from_a_child_that_died_between_batches(
        tmp_path: Path) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    directory = str(tmp_path)
    log = segments.SegmentedLog(directory, [], fsync=True)
    syncer = Syncer(reactor)
    syncer.start()
    writer = Writer(log, ThreadRunner(reactor, name="takeover-test"), reactor, syncer=syncer)
    writer.start()
    await writer.append(b"by the child")
    assert syncer._child is not None
    os.kill(syncer._child.pid, signal.SIGKILL)
    for _ in range(100):
        if not syncer.running:
            break
        await deferLater(reactor, 0.02, lambda: None)
    assert not syncer.running
    await writer.append(b"by the thread")
    assert writer.failure is None
    await writer.stop()
    syncer.stop()
    found, torn = segments.recover(directory)
    assert torn is None
    assert [p for s in found for r in s.records for p in unpack_batch(r)] == [
        b"by the child", b"by the thread"]


@pytest.mark.skipif(not available(), reason="needs Linux's sockets")
@pytest_twisted.ensureDeferred
async def test_a_write_the_child_fails_names_the_file_as_the_threads_would(
        tmp_path: Path) -> None:
    """The node's message for a failed write is the same whoever wrote:
    ``storage failed: FILE: [Errno N] ...``."""
    from twisted.internet import reactor

    directory = str(tmp_path)
    log = segments.SegmentedLog(directory, [], fsync=True, preallocate=0)
    read_only = os.open(log.path, os.O_RDONLY)
    os.dup2(read_only, log._appender.file.fileno())  # the child now fails its writes
    os.close(read_only)
    syncer = Syncer(reactor)
    syncer.start()
    writer = Writer(log, ThreadRunner(reactor, name="named-test"), reactor, syncer=syncer)
    writer.start()
    with pytest.raises(StorageFailed) as failed:
        await writer.append(b"x")
    assert str(failed.value).startswith(f"storage failed: {log.path}: [Errno {errno.EBADF}] ")
    await writer.stop()
    syncer.stop()
