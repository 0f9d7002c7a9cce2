"""Writer: one writer with group commit; an append's Deferred fires once it is fsynced.

Appends that arrive in one reactor turn, or while a batch is being written
and synced, go into the next batch, which is written as **one** record
(a msgpack array of the payloads) with **one** fsync. One record per fsync
means a crash tears at most the last record, so reading the log back cuts
a torn batch whole and never mistakes a crash for damage (see
:mod:`doozer.storage.records`).

The blocking write and fsync run through a :class:`Runner`: one dedicated
thread in production (:class:`ThreadRunner`), at once or by hand in tests.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Callable, Optional, Protocol, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from doozer.storage import records
from doozer.storage.errors import StorageError, StorageFailed

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


class Runner(Protocol):
    """Runs blocking work and reports its end on the reactor thread."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def __call__(self, work: Callable[[], None]) -> Deferred[None]: ...


class ThreadRunner:
    """Runs work in one dedicated thread, one piece at a time, in order.

    :param reactor: the reactor the results are reported on.
    :param name: the thread's name.
    """

    def __init__(self, reactor: IReactorFromThreads, name: str = "doozer-storage") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)

    def start(self) -> None:
        """Start the thread."""
        self._pool.start()

    def stop(self) -> None:
        """Stop the thread once its work is done (it waits for it)."""
        self._pool.stop()

    def __call__(self, work: Callable[[], None]) -> Deferred[None]:
        return deferToThreadPool(self._reactor, self._pool, work)


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
    """

    log = Logger()

    def __init__(self, sink: Sink, runner: Runner, clock: IReactorTime,
                 on_failure: Optional[Callable[[StorageFailed], None]] = None,
                 max_record: int = records.MAX_RECORD) -> None:
        self.sink = sink
        self._runner = runner
        self._clock = clock
        self._on_failure = on_failure
        self.max_record = max_record
        self.state = State.IDLE
        self.failure: Optional[StorageFailed] = None
        self.synced_batches = 0
        self.synced_payloads = 0
        self._pending: deque[tuple[bytes, Deferred[None]]] = deque()
        self._scheduled: Optional[IDelayedCall] = None
        self._stopping = False
        self._stopped: list[Deferred[None]] = []  # stop()'s callers, waiting

    def start(self) -> None:
        """Start the runner (its thread)."""
        self._runner.start()

    def append(self, payload: bytes) -> Deferred[None]:
        """Write ``payload``; the Deferred fires once it is on disk and synced.

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
        self._pending.append((payload, done))
        if self.state is State.IDLE and self._scheduled is None:
            # Everything appended in this turn goes into the same batch.
            self._scheduled = self._clock.callLater(0, self._flush)
        return done

    def _flush(self) -> None:
        """Write and sync the next batch, if the writer is idle and one waits."""
        self._scheduled = None
        if self.state is not State.IDLE or not self._pending:
            return
        batch: list[tuple[bytes, Deferred[None]]] = []
        size = ARRAY_HEADER
        while self._pending and (not batch or size + len(self._pending[0][0]) + BIN_HEADER <= self.max_record):
            payload, done = self._pending.popleft()
            batch.append((payload, done))
            size += len(payload) + BIN_HEADER
        payloads = [payload for payload, _ in batch]
        sink = self.sink

        def write_and_sync() -> None:  # on the runner's thread
            sink.append(pack_batch(payloads))
            sink.sync()

        self.state = State.WRITING
        self._runner(write_and_sync).addCallbacks(
            self._written, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _written(self, _: None, batch: list[tuple[bytes, Deferred[None]]]) -> None:
        """A batch is durable: release its appends, then write the next one."""
        self.synced_batches += 1
        self.synced_payloads += len(batch)
        for _payload, done in batch:
            if not done.called:  # its caller may have cancelled it
                done.callback(None)
        # Whatever arrived during the sync (or during those callbacks) has
        # waited long enough: it goes now, as one batch.
        self.state = State.IDLE
        if self._pending:
            self._flush()
        elif self._stopping:
            self._close()

    def _failed(self, reason: Failure, batch: list[tuple[bytes, Deferred[None]]]) -> None:
        """A write or sync failed: fail everything, now and later, and say so."""
        # After a failed fsync the kernel may have dropped the dirty pages:
        # a retry could "succeed" without the data. So never write again.
        cause = reason.value if reason.value is not None else RuntimeError(reason.getErrorMessage())
        error = StorageFailed(self.sink.path, cause)
        self.failure = error
        self.state = State.FAILED
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        waiting = batch + list(self._pending)
        self._pending.clear()
        for _payload, done in waiting:
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

    def call(self, work: Callable[[], None]) -> Deferred[None]:
        """Run other blocking work on the sink (e.g. deleting old segments)
        on the writer's thread, never at the same time as a batch.

        :returns: a Deferred that fires when ``work`` has run.
        """
        if self.failure is not None:
            return fail(self.failure)
        if self._stopping:
            return fail(StorageError(f"{self.sink.path}: the writer is stopped"))
        return self._runner(work)

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
