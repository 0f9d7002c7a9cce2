"""Fakes for the writer's tests: sinks, a timer, a runner finished by hand."""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred

from doozer.storage.writer import unpack_batch


class FakeSink:
    """A sink that keeps records in memory and counts fsyncs."""

    path = "fake-log"

    def __init__(self, sync_error: Optional[OSError] = None) -> None:
        self.records: list[bytes] = []
        self.syncs = 0
        self.closed = False
        self.sync_error = sync_error

    def append(self, payload: bytes) -> None:
        self.records.append(payload)

    def sync(self) -> None:
        if self.sync_error is not None:
            raise self.sync_error
        self.syncs += 1

    def close(self) -> None:
        self.closed = True

    def batches(self) -> list[list[bytes]]:
        return [unpack_batch(r) for r in self.records]


class TimedSink(FakeSink):
    """A fake sink whose write and fsync take time on a fake timer."""

    def __init__(self, timer: "FakeTimer") -> None:
        super().__init__()
        self.timer = timer

    def append(self, payload: bytes) -> None:
        self.timer.now += 0.001
        super().append(payload)

    def sync(self) -> None:
        self.timer.now += 0.004
        super().sync()


class FakeTimer:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ManualRunner:
    """Holds each piece of work until the test finishes it: while it waits,
    a write and fsync are in flight."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[[], None], Deferred[None]]] = []
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def __call__(self, work: Callable[[], None]) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        self.waiting.append((work, done))
        return done

    def finish(self) -> None:
        """Run the oldest waiting work and report how it went."""
        work, done = self.waiting.pop(0)
        try:
            work()
        except Exception as e:
            done.errback(e)
        else:
            done.callback(None)


def outcome(d: Deferred[Any]) -> list[Any]:
    """A list that gets ``d``'s result (or Failure) when it has one."""
    out: list[Any] = []
    d.addBoth(out.append)
    return out
