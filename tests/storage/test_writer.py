"""Tests for doozer.storage.writer: group commit, durability before release, failure."""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any, Optional

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, DeferredList
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from doozer.storage import records
from doozer.storage.errors import StorageError, StorageFailed
from doozer.storage.stats import Batch
from doozer.storage.writer import (
    State, SynchronousRunner, ThreadRunner, Writer, pack_batch, unpack_batch)
from writerutil import FakeSink, FakeTimer, ManualRunner, TimedSink, outcome


class ENOSPCFile:
    """A raw file on a full disk."""

    def write(self, data: memoryview, /) -> Optional[int]:
        raise OSError(errno.ENOSPC, "No space left on device")

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


def make(sink: Any = None, runner: Any = None, **kwargs: Any) -> tuple[Writer, Any, Any, Clock]:
    """A started writer on fakes (or the ones given), with its clock."""
    sink = FakeSink() if sink is None else sink
    runner = ManualRunner() if runner is None else runner
    clock = Clock()
    writer = Writer(sink, runner, clock, **kwargs)
    writer.start()
    return writer, sink, runner, clock


def test_append_fires_only_after_its_fsync() -> None:
    """The Deferred waits through the turn and the write; it fires once
    the fsync covering the record returned."""
    writer, sink, runner, clock = make()
    assert runner.started
    out = outcome(writer.append(b"a"))
    assert out == [] and runner.waiting == []
    clock.advance(0)
    assert out == [] and len(runner.waiting) == 1 and writer.state is State.WRITING
    runner.finish()
    assert out == [None] and sink.syncs == 1 and sink.batches() == [[b"a"]]
    assert writer.state is State.IDLE


def test_appends_of_one_turn_share_one_fsync() -> None:
    """Everything appended in one reactor turn is one record, one fsync."""
    writer, sink, runner, clock = make(runner=SynchronousRunner())
    outs = [outcome(writer.append(bytes([n]))) for n in range(5)]
    clock.advance(0)
    assert sink.syncs == 1 and sink.batches() == [[bytes([n]) for n in range(5)]]
    assert all(out == [None] for out in outs)
    assert (writer.synced_batches, writer.synced_payloads) == (1, 5)


def test_appends_during_an_fsync_make_one_more_batch() -> None:
    """N appends while one fsync is in flight: exactly 2 fsyncs, and every
    Deferred fires only once the fsync covering its record returned."""
    writer, sink, runner, clock = make()
    fired_after: dict[bytes, int] = {}  # payload -> fsyncs done when it fired

    def append(payload: bytes) -> None:
        writer.append(payload).addCallback(lambda _: fired_after.setdefault(payload, sink.syncs))

    append(b"first")
    clock.advance(0)
    later = [b"p%d" % n for n in range(10)]
    for payload in later:
        append(payload)
        clock.advance(0)  # turns pass; the fsync is still in flight
    assert len(runner.waiting) == 1 and fired_after == {}
    runner.finish()
    assert fired_after == {b"first": 1}
    assert runner.waiting == []  # the next batch starts at the end of the turn
    clock.advance(0)
    assert len(runner.waiting) == 1
    runner.finish()
    assert sink.syncs == 2
    assert sink.batches() == [[b"first"], later]
    assert fired_after == {b"first": 1, **{p: 2 for p in later}}


def test_callbacks_appending_join_the_next_batch() -> None:
    """What a released append's callback appends goes into the next batch."""
    writer, sink, runner, clock = make()
    writer.append(b"a").addCallback(lambda _: writer.append(b"from-callback"))
    writer.append(b"b")
    clock.advance(0)
    runner.finish()
    clock.advance(0)
    runner.finish()
    assert sink.batches() == [[b"a", b"b"], [b"from-callback"]]


def test_the_pump_a_batch_releases_joins_the_next_one() -> None:
    """Appends that waited for a batch in flight go at the end of the turn
    that batch ended in, not at once: what the turn's pump records after
    the release (scheduled by the released appends, as the node's is)
    joins them in one batch, which its flush() starts, and nothing is
    written before the batch it waited for was synced."""
    writer, sink, runner, clock = make()

    def pump() -> None:  # the node's pump: records, then flush()
        writer.append(b"from-pump")
        writer.flush()

    writer.append(b"a").addCallback(lambda _: clock.callLater(0, pump))
    clock.advance(0)
    waited = outcome(writer.append(b"waited"))
    clock.advance(0)
    assert len(runner.waiting) == 1 and sink.records == []
    runner.finish()
    assert sink.batches() == [[b"a"]] and runner.waiting == [] and waited == []
    clock.advance(0)  # the turn's end: the pump, then nothing left to start
    assert len(runner.waiting) == 1 and clock.getDelayedCalls() == []
    runner.finish()
    assert sink.batches() == [[b"a"], [b"waited", b"from-pump"]] and waited == [None]
    assert sink.syncs == 2


def test_observers_hear_each_synced_batch() -> None:
    """Each synced batch is reported once, after its appends fired: its
    payloads, the records its appenders counted, its size, the write and
    fsync times, and the round trip from hand-off to report."""
    timer = FakeTimer()
    writer, sink, runner, clock = make(sink=TimedSink(timer), timer=timer)
    heard: list[Batch] = []
    fired: list[bytes] = []
    writer.observers.append(lambda batch: heard.append(batch) or fired.append(b"observer"))
    writer.append(b"a" * 10, records=3).addCallback(lambda _: fired.append(b"a"))
    writer.append(b"b" * 20).addCallback(lambda _: fired.append(b"b"))
    clock.advance(0)
    timer.now += 0.002  # the hand-off to the thread
    runner.finish()
    assert fired == [b"a", b"b", b"observer"]
    record = sink.records[0]
    assert heard == [Batch(payloads=2, records=4, bytes=len(record), write_seconds=pytest.approx(0.001),
                           fsync_seconds=pytest.approx(0.004), seconds=pytest.approx(0.007))]
    writer.append(b"c")
    clock.advance(0)
    runner.finish()
    assert [b.records for b in heard] == [4, 1]


def test_a_failed_batch_is_not_observed() -> None:
    writer, sink, runner, clock = make(sink=FakeSink(OSError(errno.EIO, "EIO")))
    heard: list[Batch] = []
    writer.observers.append(heard.append)
    out = outcome(writer.append(b"a"))
    clock.advance(0)
    runner.finish()
    assert out[0].check(StorageFailed)
    assert heard == [] and writer.state is State.FAILED


@pytest.mark.logs_failures
def test_an_observer_that_raises_changes_nothing() -> None:
    """An observer's error is logged; the appends still fire and the next
    batch still goes."""
    writer, sink, runner, clock = make()

    def broken(batch: Batch) -> None:
        raise RuntimeError("observer broke")

    heard: list[Batch] = []
    writer.observers.extend([broken, heard.append])
    out = outcome(writer.append(b"a"))
    clock.advance(0)
    later = outcome(writer.append(b"b"))
    runner.finish()
    clock.advance(0)
    assert out == [None] and len(heard) == 1 and len(runner.waiting) == 1
    runner.finish()
    assert later == [None] and len(heard) == 2


def test_flush_starts_the_batch_within_the_turn() -> None:
    """flush() hands what was appended to the runner at once; the batch
    scheduled for the turn's end is cancelled, so nothing is written twice."""
    writer, sink, runner, clock = make()
    first = outcome(writer.append(b"a"))
    writer.append(b"b")
    writer.flush()
    assert len(runner.waiting) == 1 and writer.state is State.WRITING
    assert clock.getDelayedCalls() == []
    # While that batch is in flight, flush() only lets appends wait for it.
    writer.append(b"c")
    writer.flush()
    clock.advance(0)
    assert len(runner.waiting) == 1 and first == []
    runner.finish()
    clock.advance(0)
    runner.finish()
    assert sink.batches() == [[b"a", b"b"], [b"c"]] and first == [None]
    writer.flush()  # nothing waits: nothing happens
    assert runner.waiting == [] and sink.syncs == 2


def test_batches_are_cut_at_the_record_size() -> None:
    """A batch never exceeds max_record: the rest goes into the next one."""
    writer, sink, runner, clock = make(runner=SynchronousRunner(), max_record=40)
    outs = [outcome(writer.append(b"0123456789")) for _ in range(5)]
    clock.advance(0)
    assert [len(b) for b in sink.batches()] == [2, 2, 1]
    assert all(len(r) <= 40 for r in sink.records)
    assert all(out == [None] for out in outs)


def test_oversized_payload_is_refused_at_once() -> None:
    """A payload that cannot fit in a record is a ValueError for the caller."""
    writer, sink, runner, clock = make(max_record=40)
    with pytest.raises(ValueError):
        writer.append(b"x" * 31)
    writer.append(b"x" * 30)
    clock.advance(0)
    runner.finish()
    assert len(sink.records[0]) <= 40


def test_enospc_fails_every_pending_append_and_every_later_one() -> None:
    """A full disk fails the batch in flight, the appends waiting behind it
    and all later ones, with one clear error; the failure hook runs once and
    nothing is written again."""
    failures: list[StorageFailed] = []
    sink = records.Appender(ENOSPCFile(), "/data/log", salt=1, sync=None)
    writer, _, runner, clock = make(sink=sink, on_failure=failures.append)
    in_flight = outcome(writer.append(b"a"))
    clock.advance(0)
    waiting = [outcome(writer.append(b"b")), outcome(writer.append(b"c"))]
    runner.finish()
    for out in [in_flight] + waiting:
        assert isinstance(out[0], Failure) and out[0].check(StorageFailed)
    error = in_flight[0].value
    assert isinstance(error.cause, OSError) and error.cause.errno == errno.ENOSPC
    assert str(error).startswith("storage failed: /data/log: [Errno 28] No space left on device;")
    assert "stops voting and exits" in str(error)
    assert failures == [error] and writer.state is State.FAILED
    later = outcome(writer.append(b"d"))
    clock.advance(0)
    assert later[0].value is error and runner.waiting == []


def test_failed_fsync_is_never_retried() -> None:
    """An fsync error (EIO) fails the writer for good: after a failed fsync
    the kernel may have dropped the pages, so a retry could lie."""
    writer, sink, runner, clock = make(sink=FakeSink(OSError(errno.EIO, "Input/output error")))
    out = outcome(writer.append(b"a"))
    clock.advance(0)
    runner.finish()
    assert out[0].check(StorageFailed) and writer.state is State.FAILED
    sink.sync_error = None
    assert outcome(writer.append(b"b"))[0].check(StorageFailed)
    clock.advance(0)
    assert runner.waiting == [] and sink.syncs == 0


@pytest.mark.logs_failures
def test_failure_hook_that_raises_is_logged() -> None:
    """A hook that raises does not stop the appends from being failed."""
    def hook(error: StorageFailed) -> None:
        raise RuntimeError("hook broke")

    writer, sink, runner, clock = make(sink=FakeSink(OSError(errno.EIO, "EIO")), on_failure=hook)
    out = outcome(writer.append(b"a"))
    clock.advance(0)
    runner.finish()
    assert out[0].check(StorageFailed)


def test_cancelled_append_is_still_written() -> None:
    """Cancelling an append's Deferred stops nobody: the record is written
    and the writer does not trip over the cancelled Deferred."""
    writer, sink, runner, clock = make()
    cancelled = writer.append(b"a")
    other = outcome(writer.append(b"b"))
    cancelled.cancel()
    assert outcome(cancelled)[0].check(CancelledError)
    clock.advance(0)
    runner.finish()
    assert other == [None] and sink.batches() == [[b"a", b"b"]]


def test_stop_writes_what_was_appended_then_closes() -> None:
    """stop waits for the batch in flight and the appends behind it, then
    closes the file (on the runner) and stops the runner; later appends fail."""
    writer, sink, runner, clock = make()
    first = outcome(writer.append(b"a"))
    clock.advance(0)
    second = outcome(writer.append(b"b"))
    stopped = outcome(writer.stop())
    assert outcome(writer.append(b"c"))[0].check(StorageError)
    runner.finish()
    clock.advance(0)
    runner.finish()
    assert first == second == [None] and stopped == [] and not sink.closed
    runner.finish()  # the close
    assert stopped == [None] and sink.closed and runner.stopped
    assert writer.state is State.STOPPED
    assert outcome(writer.stop()) == [None]
    assert sink.batches() == [[b"a"], [b"b"]]


def test_stop_after_failure_closes() -> None:
    """A failed writer still closes its file and stops its runner."""
    writer, sink, runner, clock = make(sink=FakeSink(OSError(errno.EIO, "EIO")))
    outcome(writer.append(b"a"))
    clock.advance(0)
    runner.finish()
    stopped = outcome(writer.stop())
    runner.finish()
    assert stopped == [None] and sink.closed and runner.stopped


def test_batches_read_back_from_a_real_file(tmp_path: Path) -> None:
    """Each batch is one record of the file; reading unpacks the payloads."""
    path = str(tmp_path / "log")
    records.create(path, fsync=False)
    sink = records.Appender.open(path, records.recover(path), fsync=False)
    writer, _, _, clock = make(sink=sink, runner=SynchronousRunner())
    writer.append(b"a")
    writer.append(b"b")
    clock.advance(0)
    writer.append(b"c")
    clock.advance(0)
    writer.stop()
    contents = records.recover(path)
    assert [unpack_batch(r) for r in contents.records] == [[b"a", b"b"], [b"c"]]


def test_unpack_batch_refuses_other_records() -> None:
    """A record that is not a list of byte strings is not a batch."""
    assert unpack_batch(pack_batch([b"x", b"y"])) == [b"x", b"y"]
    for other in ({"a": 1}, [b"x", "y"], 3):
        with pytest.raises(ValueError):
            unpack_batch(records.pack(other))


@pytest_twisted.ensureDeferred
async def test_thread_runner_writes_off_the_reactor_thread(tmp_path: Path) -> None:
    """With the real reactor and one thread: writes and fsyncs run on the
    storage thread, appends fire on the reactor thread, the file reads back."""
    from twisted.internet import reactor

    path = str(tmp_path / "log")
    records.create(path)
    appender = records.Appender.open(path, records.recover(path))
    threads: list[str] = []

    class Watched:
        path = appender.path

        def append(self, payload: bytes) -> None:
            threads.append(threading.current_thread().name)
            appender.append(payload)

        def sync(self) -> None:
            appender.sync()

        def close(self) -> None:
            appender.close()

    fired_on: list[str] = []
    writer = Writer(Watched(), ThreadRunner(reactor, name="storage-test"), reactor)
    writer.start()
    appends = [writer.append(b"%d" % n) for n in range(20)]
    for d in appends:
        d.addCallback(lambda _: fired_on.append(threading.current_thread().name))
    await DeferredList(appends, fireOnOneErrback=True)
    await writer.append(b"last")
    await writer.stop()
    assert set(threads) == {"storage-test"}  # the one thread, named as asked
    assert set(fired_on) == {threading.main_thread().name}
    payloads = [p for r in records.recover(path).records for p in unpack_batch(r)]
    assert payloads == [b"%d" % n for n in range(20)] + [b"last"]


@pytest_twisted.ensureDeferred
async def test_thread_runner_reports_errors_in_order_and_stops() -> None:
    """Work runs one piece at a time in order; an error fails only its own
    Deferred (on the reactor thread); stop waits for the thread to end."""
    from twisted.internet import reactor

    runner = ThreadRunner(reactor, name="runner-test")
    runner.start()
    ran: list[int] = []

    def broken() -> None:
        ran.append(1)
        raise OSError(errno.EIO, "EIO")

    first = runner(lambda: ran.append(0))
    failed = runner(broken)
    last = runner(lambda: ran.append(2))
    await first
    with pytest.raises(OSError):
        await failed
    await last
    assert ran == [0, 1, 2]
    thread = runner._thread
    assert thread is not None and thread.name == "runner-test" and thread.is_alive()
    runner.stop()
    assert not thread.is_alive()
    runner.stop()  # twice is harmless


@pytest_twisted.ensureDeferred
async def test_thread_runner_wakes_for_work_however_it_is_handed_over() -> None:
    """Work handed over before the thread starts runs once it does; wake-ups
    that find nothing (read after their work was taken) are harmless; a
    pipe full of unread wake-ups never blocks the reactor; stop ends the
    thread and closes the pipe."""
    import os

    from twisted.internet import reactor

    runner = ThreadRunner(reactor, name="wake-test")
    ran: list[int] = []
    early = runner(lambda: ran.append(0))  # no thread yet
    runner.start()
    await early
    assert runner._wake is not None
    read_end, write_end = runner._wake
    for _ in range(3):
        runner._poke()  # wake-ups with no work behind them
    gate = threading.Event()
    blocked = runner(gate.wait)  # the thread is busy: the pipe fills up
    for _ in range(70_000):  # more bytes than a pipe holds
        runner._poke()
    later = runner(lambda: ran.append(1))
    gate.set()
    await blocked
    await later
    assert ran == [0, 1]
    runner.stop()
    for fd in (read_end, write_end):
        with pytest.raises(OSError):
            os.fstat(fd)
