"""One HTTP connection: Twisted's ``HTTPChannel`` read by a C parser, with a deadline and bounded output.

**Parsing.** Twisted's channel parses with ``LineReceiver``: a Python call
per line, a ``Headers`` lookup per header, a transfer decoder per body;
issue 21's profile put that at a fifth of a request. Here llhttp (through
``httptools``, the parser under uvicorn) reads the bytes; a whole request
is then handed to a twisted.web request (:class:`~doozer.server.http.site.CappedRequest`,
Klein's routes behind it) or, for the direct routes of the API's gate, to
a :class:`~doozer.server.http.lean.LeanRequest`. The parser reads every
byte it is given, so a pipelined request may be parsed while an earlier one
is answered; it waits its turn in ``_ready`` (answers go out in order), and
so does the ``100 Continue`` or the ``400`` it may be owed. What the parser
refuses (a bad request line, header, framing; a head past
``totalHeadersSize`` or ``maxHeaders``; a version other than HTTP/1.0 or
1.1) is answered ``400`` and the connection closed, as Twisted does.

What it adds to Twisted's channel (SPEC §12):

- **A deadline, not an idle timer.** The client must send a whole request
  (head and body) within the request timeout of connecting or of the end of
  its previous answer; bytes trickling in do not extend it (Twisted's own
  timer restarts on every byte: slowloris). While a request is being
  answered (a watch held for minutes) there is no deadline; after the
  answer the connection may sit idle until the next deadline, then it is
  closed, unless the client still has output of ours to read. (Twisted's
  own inactivity timer, 60 s without a byte from the client outside a
  request, still runs: it cuts off a client that neither sends nor reads.
  It is set once per connection and moved, not remade per request.)
- **Unsent output is bounded.** Once the unsent output may pass
  ``--max-output`` (:class:`~doozer.server.limits.OutputGauge`), the
  channel starts no further request, even one already read, and stops
  reading, until the transport has sent everything.
- **One request at a time.** Pipelined requests are answered in order, one
  at a time, and reading stops once 16 KiB have arrived while a request is
  being answered, so an HTTP connection has at most one request
  outstanding (far below ``--max-outstanding``) and a bounded backlog.

The connection's :class:`~doozer.server.limits.Ticket` (its place under
``--max-conns``, and its deadline) is handed over by the sniffer that
accepted it (:mod:`doozer.server.sniff`) and given back when the connection ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer.server.http.lean import LeanRequest
from doozer.server.http.sending import Sending
from doozer.server.limits import MAX_OUTPUT, OutputGauge, Ticket

if TYPE_CHECKING:  # the site builds its channels; typing only
    from doozer.server.http.site import Site

log = Logger()

_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Bad(Exception):
    """Raised in a parser callback: the request is refused (400)."""


class _Ignored(Exception):
    """Raised in a parser callback: bytes after the last request are dropped."""


class _BadRequest:
    """A 400 waiting in ``_ready`` for the answers before it."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Channel(Sending):
    """An HTTP/1.1 connection of a :class:`doozer.server.http.site.Site`."""

    #: Set by the sniffer before the connection is made; None when the
    #: channel was built without limits (tests, library use).
    ticket: Optional[Ticket] = None
    #: Set by the site that builds the channel.
    site: Site
    #: A TCP connection, or TLS over one (None until connected).
    transport: Optional[ITCPTransport]

    # Slots: Twisted's channel keeps its own attributes in a dict whose keys
    # instances share; a dozen more there would un-share it (1.5 KiB more
    # per connection, held watches included).
    __slots__ = (
        "_gauge", "_parser", "_ready", "_parsing", "_continue_due", "_closing",
        "_stopped", "_held", "_serving", "_eager", "_in_head", "_url", "_headers",
        "_head_size", "_head_count", "_head_raw", "_begun", "_cork", "_corked", "_direct",
    )

    def __init__(self) -> None:
        super().__init__()
        self._gauge = OutputGauge(MAX_OUTPUT)
        #: llhttp's state (about 0.9 KiB); dropped while a request is being
        #: answered with nothing more read (a held watch), made again for
        #: the next bytes.
        self._parser: Optional[HttpRequestParser] = None
        #: Requests read whole, not started yet (pipelined), in order.
        self._ready: list[Union[Any, _BadRequest]] = []
        #: The request whose body is being read (its head is in).
        self._parsing: Any = None
        #: The request owed a ``100 Continue`` when its turn comes.
        self._continue_due: Any = None
        self._closing = False  # read no further: the last request was read, or a bad one
        self._stopped = False  # over --max-output: start nothing, hold what is read
        self._held: list[bytes] = []
        self._serving = False
        self._eager = 0  # bytes read while a request is being answered
        # the head being parsed
        self._in_head = False
        self._url = b""
        self._headers: dict[bytes, list[bytes]] = {}
        self._head_size = 0
        self._head_count = 0
        self._head_raw = 0
        self._begun = 0  # heads begun so far
        self._init_sending()

    def connectionMade(self) -> None:
        limits = getattr(getattr(self, "site", None), "limits", None)
        if limits is not None:
            self._gauge.limit = limits.max_output
        super().connectionMade()
        self._start_sending()
        ticket = self.ticket
        if ticket is not None:
            ticket.on_expire = self._deadline_passed
            if ticket.deadline is None:
                ticket.expire_in()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.ticket is not None:
            self.ticket.release()
        self._closing = True
        self._parser = None  # it holds this channel's methods: no cycle left behind
        self._ready.clear()
        self._parsing = self._continue_due = None
        super().connectionLost(reason)

    # ------------------------------------------------------------------
    # reading

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self._closing:
            return  # after the last request (Connection: close, a 400): dropped, as Twisted does
        if self._stopped:
            self._held.append(data)
            return
        if self._handlingRequest or self._ready:
            self._eager += len(data)
            if self._eager > self._optimisticEagerReadSize and not self._waitingForTransport:
                # Twisted's bound on what a client may send ahead of its answers.
                self._networkProducer.pauseProducing()
        if self._cork is not None:  # re-entered (resumeProducing from a write)
            self._feed(data)
            self._serve()
            return
        self._cork = []
        try:
            self._feed(data)
            self._serve()
        finally:
            self._uncork()

    def _feed(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            parser = self._parser = HttpRequestParser(self)
        open_before = self._in_head
        head_before = self._begun
        try:
            parser.feed_data(data)
        except HttpParserUpgrade:
            # This node upgrades to nothing: what was read is answered, then
            # the connection closes.
            self._closing = True
            self._mark_last()
            return
        except HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, _Ignored) or self._closing:
                return  # bytes after the connection's last request: dropped
            if cause is not None and not isinstance(cause, _Bad):
                log.failure("bug while reading a request", Failure(cause))
            self._refuse(str(cause) if isinstance(cause, _Bad) else str(e))
            return
        if open_before and self._in_head and self._begun == head_before:
            # The whole chunk was the same head, held by the parser until
            # the line ends: bound it here (a chunk that starts a head is
            # one read).
            self._head_raw += len(data)
            if self._head_raw > self.totalHeadersSize:
                self._refuse("the request head is too large")

    def _mark_last(self) -> None:
        """The last request read whole is the connection's last."""
        for request in reversed(self._ready):
            if not isinstance(request, _BadRequest):
                request.doozer_persistent = False
                break

    def _refuse(self, reason: str) -> None:
        """A malformed request: 400 and close, in its turn."""
        self._closing = True
        self._in_head = False
        self._parsing = None
        self._ready.append(_BadRequest(reason))

    # parser callbacks (httptools calls them from feed_data)

    def on_message_begin(self) -> None:
        if self._closing:
            raise _Ignored()
        self._in_head = True
        self._begun += 1
        self._url = b""
        self._headers = {}
        self._head_size = self._head_count = self._head_raw = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self.totalHeadersSize:
            raise _Bad("the request line is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 2
        self._head_count += 1
        if self._head_size > self.totalHeadersSize:
            raise _Bad("the request head is too large")
        if self._head_count > self.maxHeaders:
            raise _Bad("too many headers")
        name = name.lower()
        value = value.strip(b" \t")
        values = self._headers.get(name)
        if values is None:
            self._headers[name] = [value]
        else:
            values.append(value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        assert parser is not None
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            raise _Bad("this node speaks HTTP/1.1 and HTTP/1.0")
        method = parser.get_method()
        url = self._url
        headers = self._headers
        # Twisted's rule: the first Connection header, split on spaces.
        connection = headers.get(b"connection")
        close = version == b"HTTP/1.1" and connection is not None and (
            b"close" in connection[0].lower().split(b" "))
        request: Any = None
        direct = getattr(self.site, "direct", None)
        if direct is not None and url[:4] == b"/v1/":
            request = LeanRequest(self, method, url, version, headers, close)
            if not direct(request):
                request = None
        if request is None:
            request = self.requestFactory(self, False)
            raw = request.requestHeaders
            for hname, hvalues in headers.items():
                raw.setRawHeaders(hname, hvalues)
            request.doozer_line = (method, url, version)
            request.parseCookies()
            if close:
                request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
        request.doozer_persistent = version == b"HTTP/1.1" and not close
        self.requests.append(request)
        self._parsing = request
        if b"transfer-encoding" in headers:
            length: Optional[int] = None  # chunked: llhttp took no other
        else:
            lengths = headers.get(b"content-length")
            length = int(lengths[0]) if lengths else 0
        request.gotLength(length)
        expect = headers.get(b"expect")
        if expect and version == b"HTTP/1.1" and expect[0].lower() == b"100-continue":
            if self._handlingRequest or self._ready:
                self._continue_due = request  # after the answers before it
            else:
                self._write_continue()

    def on_body(self, data: bytes) -> None:
        self._parsing.handleContentChunk(data)

    def on_message_complete(self) -> None:
        request, self._parsing = self._parsing, None
        if request is None:
            return
        if self.ticket is not None:
            self.ticket.deadline = None  # a whole request: now it is our turn
        if not request.doozer_persistent:
            self._closing = True
        self._ready.append(request)

    # ------------------------------------------------------------------
    # answering, one request at a time

    def _serve(self) -> None:
        """Start the next request read whole, unless one is being answered."""
        if self._serving:
            return  # a request answered at once: the loop below goes on
        self._serving = True
        try:
            ready = self._ready
            while ready and not self._handlingRequest and not self._stopped:
                request = ready.pop(0)
                if isinstance(request, _BadRequest):
                    self._answer_bad(request.reason)
                    return
                self._handlingRequest = True
                if self.ticket is not None:
                    self.ticket.deadline = None
                if request is self._continue_due:
                    # Owed since its head came in behind other requests:
                    # sent in its turn, as Twisted (which parses it then) does.
                    self._continue_due = None
                    self._write_continue()
                request.start()
            if self._handlingRequest and not ready and self._parsing is None and not self._in_head:
                # Held (a watch, a write waiting for consensus) with nothing
                # more read: the parser is between requests, so a new one
                # reads the next bytes as this one would.
                self._parser = None
        finally:
            self._serving = False

    def _answer_bad(self, reason: str) -> None:
        self._ready.clear()
        if self.transport is None:
            return
        body = reason.encode("ascii", "replace")[:200] + b"\n"
        self._send(
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.loseConnection()

    def requestDone(self, request: Any) -> None:
        if request is not self.requests[0]:
            raise TypeError
        del self.requests[0]
        self._handlingRequest = False
        self.resetTimeout()  # idle from now
        if not request.doozer_persistent:
            self.loseConnection()
            return
        self._eager = 0
        if not self._waitingForTransport:
            self._networkProducer.resumeProducing()
        if self.ticket is not None:
            self.ticket.expire_in()  # disarmed again by a request read whole
        due = self._continue_due
        if due is not None and not self._ready and due is self._parsing:
            self._continue_due = None  # its body is still to come: ask for it now
            self._write_continue()
        self._serve()

    def _write_continue(self) -> None:
        if self.transport is not None:
            self._send(_CONTINUE)

    # ------------------------------------------------------------------
    # the deadline

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

    def timeoutConnection(self) -> None:
        # Twisted's inactivity timer: it stops while a request is answered.
        # Twisted cancels it at every request and makes a new one after;
        # here it runs on (moving a timer later costs next to nothing) and
        # a request still being answered when it fires sets it again.
        if self._handlingRequest:
            self.setTimeout(self.timeOut)
            return
        super().timeoutConnection()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    # ------------------------------------------------------------------
    # output: the transport is this channel's consumer, the channel its producer

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
            self._stopped = False
            # During a held request reading goes on (to see the client
            # leave) until 16 KiB of pipelined bytes have arrived.
            if not self._handlingRequest or self._eager <= self._optimisticEagerReadSize:
                self._networkProducer.resumeProducing()
            held, self._held = self._held, []
            if held:
                self.dataReceived(b"".join(held))  # what was read before we stopped
            else:
                self._serve()
