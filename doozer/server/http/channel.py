"""One HTTP connection: Twisted's ``HTTPChannel`` with a deadline and bounded output.

What it adds to Twisted's channel (SPEC §12):

- **A deadline, not an idle timer.** The client must send a whole request
  (head and body) within the request timeout of connecting or of the end of
  its previous answer; bytes trickling in do not extend it (Twisted's own
  timer restarts on every byte: slowloris). While a request is being
  answered (a watch held for minutes) there is no deadline; after the
  answer the connection may sit idle until the next deadline, then it is
  closed, unless the client still has output of ours to read. (Twisted's
  own inactivity timer, 60 s without a byte from the client outside a
  request, still runs: it cuts off a client that neither sends nor reads.)
- **Unsent output is bounded.** Twisted's channel stops reading only when
  the transport fills *between* requests, so a client pipelining requests
  that are answered at once, and never reading, made the node buffer every
  answer. Here, once the unsent output may pass ``--max-output``
  (:class:`~doozer.server.limits.OutputGauge`), the channel parses no further
  request, even from bytes already read, and stops reading, until the
  transport has sent everything.
- **One request at a time.** Twisted answers pipelined requests in order,
  one at a time, and stops reading once 16 KiB of later requests are
  buffered, so an HTTP connection has at most one request outstanding
  (far below ``--max-outstanding``).

The connection's :class:`~doozer.server.limits.Ticket` (its place under
``--max-conns``, and its deadline) is handed over by the sniffer that
accepted it (:mod:`doozer.server.sniff`) and given back when the connection ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from doozer.server.limits import MAX_OUTPUT, OutputGauge, Ticket

if TYPE_CHECKING:  # the site builds its channels; typing only
    from doozer.server.http.site import Site


class Channel(HTTPChannel):
    """An HTTP/1.1 connection of a :class:`doozer.server.http.site.Site`."""

    #: Set by the sniffer before the connection is made; None when the
    #: channel was built without limits (tests, library use).
    ticket: Optional[Ticket] = None
    #: Set by the site that builds the channel.
    site: Site
    #: A TCP connection, or TLS over one (None until connected).
    transport: Optional[ITCPTransport]

    def __init__(self) -> None:
        super().__init__()
        self._gauge = OutputGauge(MAX_OUTPUT)

    def connectionMade(self) -> None:
        limits = getattr(getattr(self, "site", None), "limits", None)
        if limits is not None:
            self._gauge.limit = limits.max_output
        super().connectionMade()
        ticket = self.ticket
        if ticket is not None:
            ticket.on_expire = self._deadline_passed
            if ticket.deadline is None:
                ticket.expire_in()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.ticket is not None:
            self.ticket.release()
        super().connectionLost(reason)

    # ------------------------------------------------------------------
    # the deadline

    def allContentReceived(self) -> None:
        if self.ticket is not None:
            self.ticket.deadline = None  # a whole request: now it is our turn
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # Armed before Twisted parses the next pipelined request, which may
        # be complete already (and then disarms it again).
        if self.ticket is not None and self.persistent:
            self.ticket.expire_in()
        super().requestDone(request)

    def _deadline_passed(self) -> None:
        ticket = self.ticket
        assert ticket is not None
        if self._handlingRequest:
            return  # answering a request (a watch, a write): not idle
        if self._gauge.full:
            # The client still has our output to read: that is not idling;
            # look again later.
            ticket.expire_in()
            return
        ticket.limits.timed_out()
        # Whatever is left unsent goes first; a client that does not take
        # it within another timeout is cut off.
        ticket.on_expire = self._abort
        ticket.expire_in()
        self.loseConnection()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    # ------------------------------------------------------------------
    # output: the transport is this channel's consumer, the channel its producer

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        super().writeHeaders(version, code, reason, headers)
        if self._gauge.full:
            size = len(version) + len(code) + len(reason) + 6
            for name, values in headers.getAllRawHeaders():
                size += sum(len(name) + len(v) + 4 for v in values)
            self._wrote(size)

    def write(self, data: bytes) -> None:
        super().write(data)
        if self._gauge.full:
            self._wrote(len(data))

    def writeSequence(self, iovec: list[bytes]) -> None:
        super().writeSequence(iovec)
        if self._gauge.full:
            self._wrote(sum(map(len, iovec)))

    def _wrote(self, size: int) -> None:
        gauge = self._gauge
        gauge.wrote(size)
        if gauge.over and not self._waitingForTransport:
            # Stop: parse nothing more (LineReceiver's ``paused``), read
            # nothing more, until the transport has sent it all.
            self._waitingForTransport = True
            self.paused = True
            self._networkProducer.pauseProducing()
            limits = getattr(self.site, "limits", None)
            if limits is not None:
                limits.counters["output_paused"] += 1

    def pauseProducing(self) -> None:
        # The transport's buffer passed its own size (and says so on every
        # write from then on): from here on, count what is written.
        self._gauge.transport_full()
        if self._requestProducer is not None:
            self._requestProducer.pauseProducing()

    def resumeProducing(self) -> None:
        # The transport has sent everything.
        self._gauge.drained()
        if self._requestProducer is not None:
            self._requestProducer.resumeProducing()
        if self._waitingForTransport:
            self._waitingForTransport = False
            self.paused = False
            # During a held request Twisted keeps reading (to see the client
            # leave) until 16 KiB of pipelined bytes are buffered.
            if not self._handlingRequest or (
                sum(map(len, self._dataBuffer)) <= self._optimisticEagerReadSize
            ):
                self._networkProducer.resumeProducing()
            self.dataReceived(b"")  # parse what was read before we stopped
