"""How the client port's channel hands its answers to the transport: at once
when nothing is queued, the answers of one read in one send.

Twisted's ``write`` queues the bytes and asks the reactor to report the
socket writable: two ``epoll_ctl`` calls and a wait for a turn per answer,
a tenth of a GET's time and most of waking 10,000 held watches (issue 21).
:class:`Sending` is the output half of :class:`~doozer.server.http.channel.Channel`
(which owns reading, the order of requests and the deadline).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.tcp import Connection
from twisted.web.http import HTTPChannel

#: Answers held back while one read is served (:meth:`Sending._send`)
#: go out once they pass this many bytes.
CORK_LIMIT = 16 * 1024


class Sending(HTTPChannel):
    """The output of an HTTP channel: direct sends, the cork, ``--max-output``'s count.

    A base of :class:`~doozer.server.http.channel.Channel`, before
    ``HTTPChannel``: its ``write``, ``writeHeaders``, ``writeSequence`` and
    ``loseConnection`` go through here. The channel starts a cork for each
    read (``self._cork = []``) and calls :meth:`_uncork` when it is served.
    """

    __slots__ = ()  # the channel's own __slots__ hold the state named in _init_sending

    _cork: Optional[list[bytes]]
    _corked: int
    _direct: bool
    _gauge: Any
    site: Any

    def _init_sending(self) -> None:
        #: What is written while the bytes of one read are served: sent in
        #: one go when that read is done (see :meth:`_send`).
        self._cork = None
        self._corked = 0  # bytes in it: past CORK_LIMIT they go at once
        self._direct = False  # a plain TCP transport: send without waiting a turn

    def _start_sending(self) -> None:
        """At connectionMade: whether answers may be sent directly. Plain
        TCP only: under TLS (a wrapper here, or a connection that started
        TLS) bytes must go through the encryption."""
        transport = self.transport
        self._direct = isinstance(transport, Connection) and not transport.TLS

    def _send(self, data: bytes) -> None:
        """Hand ``data`` to the transport, sending it now when nothing is queued.

        Twisted's ``write`` queues the bytes and asks the reactor to report
        the socket writable: two ``epoll_ctl`` calls and a wait for a turn
        per answer, a tenth of a GET's time and most of waking 10,000 held
        watches (issue 21). An answer to a connection whose transport holds
        nothing unsent is sent at once with the transport's own
        ``writeSomeData`` (which knows EAGAIN and a lost connection); what
        the kernel does not take, or a lost connection, goes to ``write``,
        whose next turn sends it or notices the loss as before. While one
        read is being served the answers collect in ``_cork`` and go out in
        one send at its end, as Twisted's queue would coalesce them; every
        other write to the transport (twisted.web's, closing) first sends
        what is corked, so the order holds.
        """
        cork = self._cork
        if cork is not None:
            cork.append(data)
            self._corked += len(data)
            if self._corked < CORK_LIMIT:
                return
            # Big answers: to the transport now, where --max-output's
            # gauge sees them (and may stop this read's further requests).
            data = b"".join(cork)
            cork.clear()
            self._corked = 0
        self._push(data)

    def _push(self, data: bytes) -> None:
        """To the transport: sent now when it queues nothing (see :meth:`_send`)."""
        transport: Any = self.transport
        if (
            self._direct
            and not transport.dataBuffer
            and not transport._tempDataBuffer
            and transport.connected
            and not transport.disconnecting
        ):
            sent = transport.writeSomeData(data)
            if isinstance(sent, int):
                if sent == len(data):
                    return
                data = data[sent:]
        transport.write(data)

    def _uncork(self) -> None:
        cork, self._cork = self._cork, None
        self._corked = 0
        if cork and self.transport is not None:
            self._push(cork[0] if len(cork) == 1 else b"".join(cork))

    def loseConnection(self) -> None:
        self._uncork()
        super().loseConnection()

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        self._uncork()
        super().writeHeaders(version, code, reason, headers)
        if self._gauge.full:
            size = len(version) + len(code) + len(reason) + 6
            for name, values in headers.getAllRawHeaders():
                size += sum(len(name) + len(v) + 4 for v in values)
            self._wrote(size)

    def write(self, data: bytes) -> None:
        self._send(data)
        if self._gauge.full:
            self._wrote(len(data))

    def writeSequence(self, iovec: list[bytes]) -> None:
        self._uncork()
        super().writeSequence(iovec)
        if self._gauge.full:
            self._wrote(sum(map(len, iovec)))

    def _wrote(self, size: int) -> None:
        gauge = self._gauge
        gauge.wrote(size)
        if gauge.over and not self._waitingForTransport:
            # Stop: start no further request, read nothing more, until the
            # transport has sent it all.
            self._waitingForTransport = True
            self._stopped = True
            self._networkProducer.pauseProducing()
            limits = getattr(self.site, "limits", None)
            if limits is not None:
                limits.counters["output_paused"] += 1
