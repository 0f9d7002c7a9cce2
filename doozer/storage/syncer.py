"""Syncer: the log's batches written by a child process instead of a thread.

A thread that writes takes the GIL back after every write, from a reactor
that is busy sending and receiving: each hand-over costs both threads a
wait and the machine a context switch (measured: a third of the writes a
3-node cluster takes at 50 clients, with the disk on tmpfs, where the
write itself costs nothing; ``bench/cluster_write.py``, docs/benchmarks.md).
A child process shares no GIL. The node keeps every decision (which file,
at which offset, the record's framing) and hands the child only the write
of a batch to a file it opened ``O_DSYNC``, with the file's descriptor; the
child answers once the bytes are durable (:mod:`.syncer_child`).

Everything else the writer does (new segments, allocation, trims,
deletions) stays on its thread: rare, and ordered by the writer, which
never has two pieces of work in flight at once.
"""

from __future__ import annotations

import array
import os
import socket
import subprocess
import sys
from collections import deque
from typing import Any, Optional

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer.storage import syncer_child
from doozer.storage.errors import StorageError
from doozer.storage.records import O_DSYNC
from doozer.storage.syncer_child import MAX_REQUEST, REPLY, REQUEST

#: the most bytes one request may carry
MAX_DATA = MAX_REQUEST - REQUEST.size


def available() -> bool:
    """Whether this system has what the syncer needs: ``O_DSYNC``, Unix
    sockets of packets and descriptors passed over them (Linux has all)."""
    return bool(O_DSYNC) and hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET")


class Syncer:
    """The node's side of the child: hands it writes, fires their Deferreds.

    :param reactor: the reactor that reads the child's answers.
    """

    log = Logger()

    #: the most bytes one write may carry (a batch larger goes to the thread)
    max_data = MAX_DATA

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._sock: Optional[socket.socket] = None
        self._child: Optional[subprocess.Popen[bytes]] = None
        self._waiting: deque[tuple[Deferred[float], str]] = deque()
        self.failure: Optional[BaseException] = None

    @property
    def running(self) -> bool:
        """Whether writes can be handed to the child."""
        return self._sock is not None and self.failure is None

    def start(self) -> None:
        """Start the child (blocking: a fork and exec, once). When it cannot
        be started, say so: the writer's thread then writes every batch."""
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as e:
            self.log.warn("the log's writes stay on a thread: no socket for a child ({e})", e=e)
            return
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-I", "-S", syncer_child.__file__, str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, close_fds=True)
        except (OSError, subprocess.SubprocessError) as e:
            ours.close()
            self.log.warn("the log's writes stay on a thread: its child process did not start ({e})",
                          e=e)
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._reactor.addReader(self)
        self.log.info("the log's batches are written by a child process, pid {pid}",
                      pid=self._child.pid)

    def write(self, fd: int, data: bytes, offset: int, path: str) -> Deferred[float]:
        """Write ``data`` at ``offset`` of the file ``fd`` (opened ``O_DSYNC``).

        :param path: the file's name, for errors.
        :returns: a Deferred that fires with the write's seconds once the
            bytes are durable, or fails with the write's ``OSError``.
        """
        if self.failure is not None:
            return fail(self.failure)
        if self._sock is None:
            return fail(StorageError(f"{path}: the storage process is stopped"))
        if len(data) > MAX_DATA:
            raise ValueError(f"{len(data)} bytes are more than one request holds ({MAX_DATA})")
        try:
            self._sock.sendmsg([REQUEST.pack(offset), data],
                               [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        except OSError as e:
            if isinstance(e, (BrokenPipeError, ConnectionError)):
                self._lost(self._gone(f"a write to {path} could not be handed over: {e}"), True)
            else:
                self._lost(f"{path}: a write could not be handed to the storage process ({e})",
                           True)
            assert self.failure is not None
            return fail(self.failure)
        done: Deferred[float] = Deferred()
        self._waiting.append((done, path))
        return done

    # -- IReadDescriptor ---------------------------------------------------

    def fileno(self) -> int:
        return -1 if self._sock is None else self._sock.fileno()

    def logPrefix(self) -> str:
        return "Syncer"

    def doRead(self) -> None:
        while self._sock is not None:  # a callback below may stop the syncer
            try:
                reply = self._sock.recv(REPLY.size + 1)
            except BlockingIOError:
                return
            except OSError as e:
                self._lost(self._gone(str(e)))
                return
            if len(reply) != REPLY.size or not self._waiting:
                self._lost(self._gone("" if not reply else "it answered out of turn"))
                return
            code, seconds = REPLY.unpack(reply)
            done, path = self._waiting.popleft()
            if code:
                done.errback(OSError(code, os.strerror(code)))  # as os.write raises it
            else:
                done.callback(seconds)

    def connectionLost(self, reason: Failure) -> None:
        self._lost(self._gone(reason.getErrorMessage()))

    def _gone(self, why: str) -> str:
        """What happened to a child that is gone, or not to be trusted."""
        code = self._child.poll() if self._child is not None else None
        said = [f"exit code {code}"] if code is not None else []
        said += [why] if why else []
        return "the storage process exited" + (f" ({'; '.join(said)})" if said else "")

    def _lost(self, what: str, failing: bool = False) -> None:
        """The child cannot be trusted with more: hand it nothing again.

        A write it had not answered may or may not be on disk: it fails,
        and the node stops writing (as after any failed write); so does a
        write that could not be handed over (``failing``). With nothing in
        flight nothing is in doubt: every write it answered is durable, and
        the writer's thread writes the batches from now on.
        """
        if self.failure is None:
            if self._waiting or failing:
                self.failure = StorageError(f"{what}, with a write in flight: the node stops "
                                            f"writing; restart it")
                self.log.error("{error}", error=str(self.failure))
            else:
                self.failure = StorageError(what)
                self.log.warn("{what}: the log's writes go on from the writer's thread",
                              what=what)
        self._close()
        waiting, self._waiting = self._waiting, deque()
        for done, _path in waiting:
            done.errback(self.failure)

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            self._reactor.removeReader(self)
            sock.close()

    def stop(self) -> None:
        """Close the child's socket and wait for it to end (it ends at once:
        the writer stops only with nothing in flight)."""
        self._close()
        child, self._child = self._child, None
        if child is not None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for done, path in list(self._waiting):
            done.errback(StorageError(f"{path}: the storage process is stopped"))
        self._waiting.clear()

