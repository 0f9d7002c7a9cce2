"""Writer: one writer with group commit; an append's Deferred fires once it is fsynced.

Appends that arrive in one reactor turn, or while a batch is being written
and synced, go into the next batch, which is written as **one** record
(a msgpack array of the payloads) with **one** fsync. One record per fsync
means a crash tears at most the last record, so reading the log back cuts
a torn batch whole and never mistakes a crash for damage (see
:mod:`doozer.storage.records`).

The blocking write and fsync run through a :class:`Runner`: one dedicated
thread in production (:class:`ThreadRunner`), at once or by hand in tests.
With a :class:`Syncer` (production, on Linux) a batch that needs only one
``O_DSYNC`` write to the current segment is written by a child process
instead (:mod:`doozer.storage.syncer`): the thread then does only the rare
work (new segments, allocation, snapshots, compaction), and the writer
never has the two working at once.

Every synced batch is reported to the writer's :attr:`Writer.observers`
(sizes and fsync time, :class:`~doozer.storage.stats.Batch`), on the
reactor thread.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections import deque
from typing import Callable, Optional, Protocol, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer.storage import records
from doozer.storage.errors import StorageError, StorageFailed
from doozer.storage.stats import Batch

#: msgpack's largest array header and bin header: a batch of payloads p is
#: at most ARRAY_HEADER + sum(len(p) + BIN_HEADER) bytes.
ARRAY_HEADER = 5
BIN_HEADER = 5


def pack_batch(payloads: Sequence[bytes]) -> bytes:
    """The record that holds one batch of payloads."""
    return records.pack(list(payloads))


def unpack_batch(record: bytes) -> list[bytes]:
    """The payloads of a batch :func:`pack_batch` made.

    :raises ValueError: when ``record`` is not a batch.
    """
    batch = records.unpack(record)
    if not isinstance(batch, list) or not all(isinstance(p, bytes) for p in batch):
        raise ValueError("not a batch of payloads")
    return batch


class Sink(Protocol):
    """Where batches go: a record file (:class:`records.Appender`) or a fake."""

    path: str

    def append(self, payload: bytes) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...

    def plan(self, payload: bytes) -> Optional[tuple[int, bytes, int]]: ...


class Syncer(Protocol):
    """Writes a batch to a file opened ``O_DSYNC``, in another process
    (:class:`doozer.storage.syncer.Syncer`); started and stopped by its owner."""

    @property
    def running(self) -> bool: ...

    @property
    def max_data(self) -> int:
        """The most bytes one write may carry."""

    def write(self, fd: int, data: bytes, offset: int, path: str) -> Deferred[float]: ...


class Runner(Protocol):
    """Runs blocking work and reports its end on the reactor thread."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def __call__(self, work: Callable[[], None]) -> Deferred[None]: ...


class ThreadRunner:
    """Runs work in one dedicated thread, one piece at a time, in order.

    A plain thread, not a Twisted ``ThreadPool``: the pool's per-call
    context copies, wrappers and Deferred chain cost about as much reactor
    time per batch as the node's own pump.

    The thread sleeps in a ``read`` of a pipe, and work is handed to it as
    an item on a deque and one byte written to the pipe. The reactor
    thread gives the GIL up for that ``write``, so the thread it wakes can
    take the GIL at once and be in its own write (which gives the GIL up
    again) before the reactor goes on. A ``queue.SimpleQueue`` wakes the
    thread while the reactor holds the GIL: the thread woke only to wait
    for it, often until the reactor's next system call or the end of a
    switch interval (5 ms). The end of the work is reported with one
    ``callFromThread``.

    :param reactor: the reactor the results are reported on.
    :param name: the thread's name.
    """

    def __init__(self, reactor: IReactorFromThreads, name: str = "doozer-storage") -> None:
        self._reactor = reactor
        self.name = name
        self._work: deque[Optional[tuple[Callable[[], None], Deferred[None]]]] = deque()
        self._wake: Optional[tuple[int, int]] = None  # the pipe: read end, write end
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start the thread (work handed over before this waits for it)."""
        if self._thread is None:
            read_end, write_end = os.pipe()
            # Never block the reactor: a full pipe already holds wake-ups.
            os.set_blocking(write_end, False)
            self._wake = (read_end, write_end)
            # A daemon: a process that ends without stopping it (a test, a
            # crash) is not kept alive by it; a clean stop waits for it.
            self._thread = threading.Thread(target=self._run, args=(read_end,),
                                            name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread once its work is done (it waits for it)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._work.append(None)
            self._poke()
            thread.join()
            assert self._wake is not None
            for fd in self._wake:
                os.close(fd)
            self._wake = None

    def __call__(self, work: Callable[[], None]) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        self._work.append((work, done))
        self._poke()
        return done

    def _poke(self) -> None:
        """Wake the thread (it finds the work on the deque)."""
        if self._wake is not None:
            try:
                os.write(self._wake[1], b"\0")
            except BlockingIOError:  # the pipe is full of wake-ups not yet read
                pass

    def _run(self, wake: int) -> None:  # the thread
        call = self._reactor.callFromThread
        work_items = self._work
        read = os.read
        while True:
            # A wake-up may be read after its item was taken (spurious) and
            # an item may come before its wake-up: the deque decides.
            while not work_items:
                read(wake, 4096)
            item = work_items.popleft()
            if item is None:
                return
            work, done = item
            try:
                work()
            except BaseException as e:  # reported, never raised in the thread
                call(done.errback, e)
            else:
                call(done.callback, None)


class SynchronousRunner:
    """Runs work at once on the calling thread: for tests, never the reactor's."""

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def __call__(self, work: Callable[[], None]) -> Deferred[None]:
        try:
            work()
        except Exception as e:
            return fail(e)
        return succeed(None)


class State(enum.Enum):
    """Where the writer is: ``FAILED`` lasts until it is stopped, ``STOPPED`` for good."""

    IDLE = "idle"  # no batch in flight
    WRITING = "writing"  # one batch being written and synced
    FAILED = "failed"  # a write or sync failed: nothing more is written
    STOPPED = "stopped"


class Writer:
    """The one writer of a record file.

    :param sink: the file (blocking; only ever used by ``runner``'s work).
    :param runner: runs the writes and syncs off the reactor thread.
    :param clock: schedules a turn's batch at the end of the turn.
    :param on_failure: called once with the :class:`StorageFailed` when a
        write or sync fails: the node must stop voting and exit (SPEC §8).
    :param max_record: the largest record the sink takes; a batch is cut
        before it would exceed it (the rest goes into the next batch).
    :param timer: measures the batches' times (seconds, monotonic).
    """

    log = Logger()

    def __init__(self, sink: Sink, runner: Runner, clock: IReactorTime,
                 on_failure: Optional[Callable[[StorageFailed], None]] = None,
                 max_record: int = records.MAX_RECORD,
                 timer: Callable[[], float] = time.perf_counter,
                 syncer: Optional[Syncer] = None) -> None:
        self.sink = sink
        self._syncer = syncer
        self._runner = runner
        self._clock = clock
        self._on_failure = on_failure
        self.max_record = max_record
        self._timer = timer
        self.state = State.IDLE
        self.failure: Optional[StorageFailed] = None
        self.synced_batches = 0
        self.synced_payloads = 0
        #: called on the reactor thread with each synced :class:`Batch`,
        #: after its appends fired (the node's summary, a ``/metrics``)
        self.observers: list[Callable[[Batch], None]] = []
        self._pending: deque[tuple[bytes, int, Deferred[None]]] = deque()
        self._scheduled: Optional[IDelayedCall] = None
        self._stopping = False
        self._stopped: list[Deferred[None]] = []  # stop()'s callers, waiting
        # The syncer and the runner never work at once: a batch with the
        # syncer waits for the runner's work, and work for the runner waits
        # for a batch with the syncer (kept here, in order, until it ends).
        self._on_runner = 0  # pieces of call()'s work handed to the runner, not back
        self._syncing = False  # a batch is with the syncer
        self._after_sync: list[tuple[Callable[[], None], Deferred[None]]] = []

    def start(self) -> None:
        """Start the runner (its thread)."""
        self._runner.start()

    def append(self, payload: bytes, records: int = 1) -> Deferred[None]:
        """Write ``payload``; the Deferred fires once it is on disk and synced.

        :param records: what the payload counts as for the observers
            (:attr:`Batch.records`), e.g. the records encoded in it.
        :raises ValueError: when ``payload`` cannot fit in a record.
        :returns: a Deferred that fires with None once ``payload`` is
            durable, or fails with :class:`StorageFailed` when it never will be.
        """
        if len(payload) + ARRAY_HEADER + BIN_HEADER > self.max_record:
            raise ValueError(f"a payload of {len(payload)} bytes does not fit in a record "
                             f"of {self.max_record}")
        if self.failure is not None:
            return fail(self.failure)
        if self._stopping:
            return fail(StorageError(f"{self.sink.path}: the writer is stopped"))
        done: Deferred[None] = Deferred()
        self._pending.append((payload, records, done))
        if self.state is State.IDLE and self._scheduled is None:
            # Everything appended in this turn goes into the same batch.
            self._scheduled = self._clock.callLater(0, self._flush)
        return done

    def flush(self) -> None:
        """Start writing what was appended now, not at the end of the turn:
        for a caller whose appends of this turn are all made (the node
        appends once per pump). Does nothing while a batch is in flight:
        the appends wait for it, as ever."""
        if self._scheduled is not None:
            self._scheduled.cancel()
        self._flush()

    def _flush(self) -> None:
        """Write and sync the next batch, if the writer is idle and one waits."""
        self._scheduled = None
        if self.state is not State.IDLE or not self._pending:
            return
        batch: list[tuple[bytes, int, Deferred[None]]] = []
        size = ARRAY_HEADER
        while self._pending and (not batch or size + len(self._pending[0][0]) + BIN_HEADER <= self.max_record):
            item = self._pending.popleft()
            batch.append(item)
            size += len(item[0]) + BIN_HEADER
        # Packed here, not on the runner's thread: that thread then runs as
        # little Python as it can (it takes the GIL from a busy reactor for
        # every step), only the write and the sync.
        record = pack_batch([item[0] for item in batch])
        sink, timer = self.sink, self._timer
        timing = [len(record), 0.0, 0.0]  # bytes, write and fsync seconds: set by the thread
        self.state = State.WRITING
        syncer = self._syncer
        if (syncer is not None and syncer.running and not self._on_runner
                and len(record) + records.FRAME.size <= syncer.max_data):
            try:
                planned = sink.plan(record)
            except Exception as e:  # a log that failed before
                fail(e).addErrback(self._failed, batch)
                return
            if planned is not None:
                self._syncing = True

                def synced(seconds: float) -> None:
                    timing[1] = seconds

                fd, data, offset = planned
                syncer.write(fd, data, offset, sink.path).addCallback(synced).addCallbacks(
                    self._written, self._failed, callbackArgs=(batch, timing, timer()),
                    errbackArgs=(batch,))
                return

        def write_and_sync() -> None:  # on the runner's thread
            start = timer()
            sink.append(record)
            written = timer()
            sink.sync()
            timing[1:] = written - start, timer() - written

        self._runner(write_and_sync).addCallbacks(
            self._written, self._failed, callbackArgs=(batch, timing, timer()),
            errbackArgs=(batch,))

    def _written(self, _: None, batch: list[tuple[bytes, int, Deferred[None]]],
                 timing: list[float], started: float) -> None:
        """A batch is durable: release its appends, then write the next one."""
        self._synced()
        self.synced_batches += 1
        self.synced_payloads += len(batch)
        for _payload, _records, done in batch:
            if not done.called:  # its caller may have cancelled it
                done.callback(None)
        # Whatever arrived during the sync (or during those callbacks) goes
        # as one batch at the end of this turn, not at once: the callbacks
        # scheduled the node's pump that sends what this batch released,
        # and what that pump records joins the batch (its flush() starts
        # it) instead of waiting a whole fsync for the next one. That is a
        # batch less per batch released, with what it costs (a hand-off
        # each way, a pump, datagrams); the records that waited lose only
        # the pump's time.
        self.state = State.IDLE
        if self._pending:
            if self._scheduled is None:
                self._scheduled = self._clock.callLater(0, self._flush)
        elif self._stopping:
            self._close()
        if self.observers:
            size, write_seconds, fsync_seconds = timing
            report = Batch(len(batch), sum(item[1] for item in batch), int(size),
                           write_seconds, fsync_seconds, self._timer() - started)
            for observer in self.observers:
                try:
                    observer(report)
                except Exception:
                    self.log.failure("a storage observer raised")

    def _failed(self, reason: Failure, batch: list[tuple[bytes, int, Deferred[None]]]) -> None:
        """A write or sync failed: fail everything, now and later, and say so."""
        # After a failed fsync the kernel may have dropped the dirty pages:
        # a retry could "succeed" without the data. So never write again.
        cause = reason.value if reason.value is not None else RuntimeError(reason.getErrorMessage())
        error = StorageFailed(self.sink.path, cause)
        self.failure = error
        self._synced(error)
        self.state = State.FAILED
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        waiting = batch + list(self._pending)
        self._pending.clear()
        for _payload, _records, done in waiting:
            if not done.called:
                done.errback(error)
        self.log.error("{error}", error=str(error))
        if self._on_failure is not None:
            try:
                self._on_failure(error)
            except Exception:
                self.log.failure("on_failure hook raised")
        if self._stopping:
            self._close()

    def _synced(self, error: Optional[StorageFailed] = None) -> None:
        """A batch is back: hand the runner the work that waited for it, or
        fail that work with ``error``, the batch's failure."""
        self._syncing = False
        waiting, self._after_sync = self._after_sync, []
        for work, done in waiting:
            if error is None:
                self._run(work).chainDeferred(done)
            else:
                done.errback(error)

    def _run(self, work: Callable[[], None]) -> Deferred[None]:
        """Hand ``work`` to the runner, counted until it is back."""
        def back(result: object) -> object:
            self._on_runner -= 1
            return result

        self._on_runner += 1
        return self._runner(work).addBoth(back)

    def call(self, work: Callable[[], None]) -> Deferred[None]:
        """Run other blocking work on the sink (e.g. deleting old segments)
        on the writer's thread, never at the same time as a batch.

        :returns: a Deferred that fires when ``work`` has run.
        """
        if self.failure is not None:
            return fail(self.failure)
        if self._stopping:
            return fail(StorageError(f"{self.sink.path}: the writer is stopped"))
        if self._syncing:
            done: Deferred[None] = Deferred()
            self._after_sync.append((work, done))
            return done
        return self._run(work)

    def stop(self) -> Deferred[None]:
        """Write what was appended, then close the file and stop the runner.

        Appends after this fail. The Deferred fires when all is done.
        """
        stopped: Deferred[None] = Deferred()
        if self.state is State.STOPPED:
            stopped.callback(None)
            return stopped
        self._stopped.append(stopped)
        if not self._stopping:
            self._stopping = True
            if self.state is not State.WRITING and not self._pending:
                self._close()
        return stopped

    def _close(self) -> None:
        """Close the sink and stop the runner (nothing is in flight)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None

        def stop_runner(result: object) -> None:
            self._runner.stop()
            self.state = State.STOPPED
            if isinstance(result, Failure):
                self.log.failure("closing {path} failed", result, path=self.sink.path)
            waiting, self._stopped = self._stopped, []
            for stopped in waiting:
                stopped.callback(None)

        self._runner(self.sink.close).addBoth(stop_runner)
