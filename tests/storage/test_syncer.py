"""Tests for doozer.storage.syncer: the node's side of the child process
that writes the log's batches (a real child, the real reactor)."""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from doozer.storage import syncer as syncer_module
from doozer.storage.errors import StorageError
from doozer.storage.syncer import MAX_DATA, Syncer

pytestmark = pytest.mark.skipif(not syncer_module.available(), reason="needs Linux's sockets")


@pytest.fixture
def syncer() -> Iterator[Syncer]:
    from twisted.internet import reactor

    started = Syncer(reactor)
    started.start()
    assert started.running
    yield started
    started.stop()


@pytest.fixture
def synced_file(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    path = tmp_path / "log"
    path.write_bytes(b"")
    fd = os.open(path, os.O_WRONLY | os.O_DSYNC)
    yield fd, path
    os.close(fd)


def sleep(seconds: float) -> Deferred[None]:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_writes_fire_in_order_once_written(syncer: Syncer,
                                                 synced_file: tuple[int, Path]) -> None:
    fd, path = synced_file
    fired: list[int] = []
    writes = [syncer.write(fd, b"%03d" % n, 3 * n, str(path)) for n in range(50)]
    for n, d in enumerate(writes):
        d.addCallback(lambda seconds, n=n: fired.append(n) or seconds)
    seconds = [await d for d in writes]
    assert fired == list(range(50))
    assert all(s >= 0 for s in seconds)
    assert path.read_bytes() == b"".join(b"%03d" % n for n in range(50))


@pytest_twisted.ensureDeferred
async def test_a_failed_write_fails_with_its_errno(
        syncer: Syncer, tmp_path: Path) -> None:
    path = tmp_path / "read-only"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as raised:
            await syncer.write(fd, b"data", 0, str(path))
    finally:
        os.close(fd)
    assert raised.value.errno == errno.EBADF  # the writer names the file (StorageFailed)
    assert syncer.running  # one write's error is that write's


@pytest_twisted.ensureDeferred
async def test_a_child_that_dies_fails_what_waits_and_every_later_write(
        syncer: Syncer, synced_file: tuple[int, Path]) -> None:
    fd, path = synced_file
    child = syncer._child
    assert child is not None
    os.kill(child.pid, signal.SIGSTOP)  # it takes the request, never answers
    waiting = syncer.write(fd, b"lost", 0, str(path))
    os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(StorageError, match="storage process exited.*in flight.*stops writing"):
        await waiting
    assert not syncer.running
    with pytest.raises(StorageError, match="storage process"):
        await syncer.write(fd, b"later", 0, str(path))


def test_a_write_larger_than_a_request_is_refused(syncer: Syncer) -> None:
    with pytest.raises(ValueError, match="more than one request"):
        syncer.write(0, b"x" * (MAX_DATA + 1), 0, "f")


@pytest_twisted.ensureDeferred
async def test_stop_ends_the_child_and_later_writes_fail(synced_file: tuple[int, Path]) -> None:
    from twisted.internet import reactor

    fd, path = synced_file
    syncer = Syncer(reactor)
    syncer.start()
    await syncer.write(fd, b"one", 0, str(path))
    child = syncer._child
    assert child is not None
    syncer.stop()
    assert child.poll() is not None  # ended, and waited for
    assert not syncer.running
    with pytest.raises(StorageError, match="stopped"):
        await syncer.write(fd, b"two", 3, str(path))
    syncer.stop()  # twice is harmless
    assert path.read_bytes() == b"one"


def test_a_child_that_cannot_start_leaves_the_writes_to_the_thread(
        monkeypatch: Any) -> None:
    from twisted.internet import reactor

    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    syncer = Syncer(reactor)
    syncer.start()  # logs, does not raise
    assert not syncer.running
    syncer.stop()


@pytest_twisted.ensureDeferred
async def test_the_child_leaves_interrupts_and_terminations_to_the_node(
        syncer: Syncer, synced_file: tuple[int, Path]) -> None:
    """Ctrl-C or a service manager's SIGTERM reach the node's whole group:
    the child keeps writing until the node, which still has its last batch
    to write, closes the socket."""
    fd, path = synced_file
    await syncer.write(fd, b"before", 0, str(path))  # the child is serving
    assert syncer._child is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        os.kill(syncer._child.pid, sig)
    await sleep(0.1)
    await syncer.write(fd, b"after", 6, str(path))
    assert syncer._child.poll() is None
    assert path.read_bytes() == b"beforeafter"


@pytest_twisted.ensureDeferred
async def test_a_child_that_dies_idle_fails_nothing(syncer: Syncer,
                                                    synced_file: tuple[int, Path]) -> None:
    """Every write it answered is durable: nothing is in doubt, so nothing
    fails; the syncer stops taking writes (the writer's thread takes over)."""
    fd, path = synced_file
    await syncer.write(fd, b"kept", 0, str(path))
    assert syncer._child is not None
    os.kill(syncer._child.pid, signal.SIGKILL)
    for _ in range(100):
        if not syncer.running:
            break
        await sleep(0.02)
    assert not syncer.running
    assert "stops writing" not in str(syncer.failure)
    assert path.read_bytes() == b"kept"


@pytest.mark.parametrize("reply, waiting", [(b"\0" * 12, False), (b"short", True),
                                            (b"\0" * 40, True)])
@pytest_twisted.ensureDeferred
async def test_an_answer_that_is_not_one_stops_the_syncer(reply: bytes, waiting: bool,
                                                          tmp_path: Path) -> None:
    """Answers out of turn or of the wrong size are never taken for a
    durable write: what waits fails, and nothing is handed over again."""
    import socket

    from twisted.internet import reactor

    syncer = Syncer(reactor)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    syncer._sock = ours  # a child we play ourselves
    reactor.addReader(syncer)
    try:
        pending = None
        if waiting:
            fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
            try:
                pending = syncer.write(fd, b"data", 0, "f")
            finally:
                os.close(fd)
        theirs.send(reply)
        if pending is not None:
            with pytest.raises(StorageError, match="in flight"):
                await pending
        else:
            for _ in range(100):
                if not syncer.running:
                    break
                await sleep(0.01)
        assert not syncer.running
        with pytest.raises(StorageError):
            await syncer.write(0, b"x", 0, "f")
    finally:
        syncer.stop()
        theirs.close()
