"""``GET /v1/backup``: a node's backup, streamed as it is packed, one at a time.

The store is captured in the reactor turn of the request (one rev: nothing
else runs in between); the backup is then packed and hashed a piece at a
time (:func:`doozer.store.backup.chunks`, about 64 KiB each) as the client
takes it, so neither the packing nor a slow client holds the reactor, and
the node keeps no copy of the backup. One backup at a time per node: while
one is being sent, another is ``503 BUSY`` (safe to retry; a client fails
over to another node). A client that takes nothing for :data:`STALL_TIMEOUT`
seconds is cut off, so it cannot hold that one place for ever.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Optional

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.server import Request
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from zope.interface import implementer

from doozer.errors import DoozerError

#: Seconds a client may take no byte of its backup before it is cut off.
STALL_TIMEOUT = 60.0

log = Logger()


class Backups:
    """The backups a node is sending: at most one.

    :param clock: for the stall timeout.
    """

    def __init__(self, clock: IReactorTime, stall_timeout: float = STALL_TIMEOUT) -> None:
        self.clock = clock
        self.stall_timeout = stall_timeout
        self.sending: Optional["_Sender"] = None

    def start(self, node: Any) -> IResource:
        """The response for one backup of ``node``, captured now.

        :raises DoozerError: ``BUSY`` while another backup is being sent;
            ``READONLY`` when the node is in no cluster yet.
        """
        if self.sending is not None:
            raise DoozerError(
                "BUSY",
                "this node is sending another backup; retry when it is done, or back up "
                "another node",
            )
        rev = node.store.rev
        pieces = node.backup()
        name = re.sub(r"[^A-Za-z0-9._-]", "_", node.cluster) or "doozer"
        return _Response(self, pieces, rev, f"{name}-{rev}.doozer-backup")


class _Response(Resource):
    """One backup's response: its headers, then its pieces as the client reads."""

    isLeaf = True

    def __init__(self, backups: Backups, pieces: Iterator[bytes], rev: int, filename: str) -> None:
        super().__init__()
        self._backups = backups
        self._pieces = pieces
        self._rev = rev
        self._filename = filename

    def render(self, request: IRequest) -> Any:
        request.setHeader(b"Content-Type", b"application/octet-stream")
        request.setHeader(
            b"Content-Disposition", f'attachment; filename="{self._filename}"'.encode()
        )
        request.setHeader(b"Cache-Control", b"no-store")
        # The backup's rev: the node's rev when it answered, as on every answer.
        request.setHeader(b"X-Doozer-Rev", b"%d" % self._rev)
        sender = _Sender(self._backups, request, self._pieces)  # type: ignore[arg-type]
        self._backups.sending = sender
        sender.start()
        return server.NOT_DONE_YET


@implementer(IPushProducer)
class _Sender:
    """Writes the pieces while the connection takes them (a push producer:
    the transport pauses it when its buffer is full, resumes it when sent)."""

    def __init__(self, backups: Backups, request: Request, pieces: Iterator[bytes]) -> None:
        self._backups = backups
        self._request: Optional[Request] = request
        self._pieces = pieces
        self._paused = False
        self._writing = False
        self._stall: Optional[IDelayedCall] = None

    def start(self) -> None:
        request = self._request
        assert request is not None
        request.notifyFinish().addBoth(self._ended)
        request.registerProducer(self, True)
        self._stall = self._backups.clock.callLater(self._backups.stall_timeout, self._stalled)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._writing:  # called from within our own write
            return
        self._writing = True
        try:
            while not self._paused and self._request is not None:
                piece = next(self._pieces, None)
                if piece is None:
                    request = self._request
                    request.unregisterProducer()
                    request.finish()
                    return
                self._request.write(piece)
                if self._stall is not None and self._stall.active():
                    self._stall.reset(self._backups.stall_timeout)
        except Exception:
            log.failure("bug while sending a backup; the connection is cut off")
            self._abort()
        finally:
            self._writing = False

    def pauseProducing(self) -> None:
        self._paused = True

    def stopProducing(self) -> None:
        self._abort()

    def _stalled(self) -> None:
        log.warn("a backup's client took nothing for {seconds:g} s; cut off",
                 seconds=self._backups.stall_timeout)
        self._abort()

    def _abort(self) -> None:
        # Cut off, never finish: the client sees a truncated backup, which
        # fails its checksum, rather than a short one that looks whole.
        request = self._request
        if request is not None:
            transport = getattr(request.channel, "transport", None)
            if transport is not None:
                abort = getattr(transport, "abortConnection", None) or transport.loseConnection
                abort()
        self._release()

    def _ended(self, result: Any) -> Optional[Failure]:
        self._release()
        return None

    def _release(self) -> None:
        self._request = None
        self._pieces = iter(())
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        if self._backups.sending is self:
            self._backups.sending = None
