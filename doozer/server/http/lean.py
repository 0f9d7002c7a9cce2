"""The request of the busiest routes (store reads and writes, watches), without twisted.web's.

A ``twisted.web`` :class:`~twisted.web.server.Request` costs two
:class:`~twisted.web.http_headers.Headers` objects (every name
canonicalised and validated on the way in and out), a resource lookup, a
deferred-based finish, and the header writing of ``Request.write``; the
profile of issue 21 put that, with the line parser in front of it, at
about half of a request. The routes :meth:`doozer.server.http.api.API.direct`
names (``/v1/store/...``, ``/v1/watch``) use a small part of the request
interface; :class:`LeanRequest` is that part and nothing else:

- what the routes read: ``method``, ``uri``, ``path``, ``args`` (parsed as
  Twisted does), ``clientproto``, ``content``, ``getHeader`` (the last
  value, as Twisted's), ``requestHeaders.getRawHeaders``, ``channel``;
- what they answer with: ``setResponseCode``, ``setHeader``, ``write``,
  ``finish``, ``notifyFinish`` (fired when answered, failed when the
  client leaves: that is what cancels a held watch), ``processingFailed``.

The answer is sent as one write, with the same status line and headers
``twisted.web`` would send (``Server``, ``Date``, ``Connection: close``
when the client asked, names canonicalised by Twisted's own encoder).
Everything else, and these routes when an access log is asked for, goes
through ``twisted.web`` and Klein as before (:mod:`doozer.server.http.channel`
picks). The body cap is the same as :class:`~doozer.server.http.site.CappedRequest`'s
(:class:`~doozer.server.http.bodycap.BodyCap`).
"""

from __future__ import annotations

import time
from io import BytesIO
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, RESPONSES, datetimeToString, parse_qs
from twisted.web.http_headers import _nameEncoder, _sanitizeLinearWhitespace
from twisted.web.server import NOT_DONE_YET, version as SERVER

from doozer.server.http.bodycap import BodyCap

if TYPE_CHECKING:
    from doozer.server.http.channel import Channel

log = Logger()

_DATE: list[Any] = [0, b""]
#: Header names as the routes spell them -> as Twisted writes them (the
#: routes use a handful; Twisted's encoder, with its own cache, is slower).
_CANONICAL: dict[bytes, bytes] = {}


def http_date() -> bytes:
    """``Date``'s value, formatted once a second (``datetimeToString`` per answer costs)."""
    now = int(time.time())
    if _DATE[0] != now:
        _DATE[0], _DATE[1] = now, datetimeToString(now)
    return _DATE[1]


class RawHeaders:
    """The request's headers as the routes ask for them (``getRawHeaders``).

    :param headers: lower-case name to its values, in the order received.
    """

    __slots__ = ("_headers",)

    def __init__(self, headers: dict[bytes, list[bytes]]) -> None:
        self._headers = headers

    def getRawHeaders(self, name: bytes, default: Any = None) -> Any:
        return self._headers.get(name.lower(), default)

    def hasHeader(self, name: bytes) -> bool:
        return name.lower() in self._headers


class LeanRequest(BodyCap):
    """One request to a direct route (see the module docstring).

    :param channel: the connection it came on.
    :param method: the method, as sent (``GET``).
    :param uri: the request target, as sent.
    :param version: ``HTTP/1.1`` or ``HTTP/1.0``.
    :param headers: lower-case name to its values.
    :param close: an HTTP/1.1 client asked to close after this answer
        (``Connection: close``, said back as Twisted does).
    """

    __slots__ = (
        "method", "uri", "path", "args", "clientproto", "requestHeaders", "code",
        "code_message", "site", "doozer_access", "doozer_persistent", "_out", "_body",
        "_notify", "finished", "_disconnected", "doozer_route", "_on_lost",
    )

    def __init__(self, channel: "Channel", method: bytes, uri: bytes, version: bytes,
                 headers: dict[bytes, list[bytes]], close: bool = False) -> None:
        self.channel: Any = channel  # None once the client has gone
        self.site = channel.site
        self.method = method
        self.uri = uri
        path, _, query = uri.partition(b"?")
        self.path = path
        self.args = parse_qs(query, 1) if query else {}  # Twisted's, for the same args
        self.clientproto = version
        self.requestHeaders = RawHeaders(headers)
        self.content = None
        self.code = 200
        self.code_message = b"OK"
        self._init_cap()
        self.doozer_access = "rw"
        self.doozer_persistent = True
        #: canonical name -> value, in Twisted's order (the ``Connection:
        #: close`` answering an HTTP/1.1 client's, Host and Origin's, then
        #: Server and Date, then the route's)
        self._out: dict[bytes, bytes] = {b"Connection": b"close"} if close else {}
        self._body: list[bytes] = []
        self._notify: Optional[list[Deferred[None]]] = None
        self.finished = False
        self._disconnected = False
        #: the route the gate named (:meth:`doozer.server.http.gate.Gate.direct`)
        self.doozer_route: Any = None
        #: what cancels the answer being waited for (see :meth:`serve_later`)
        self._on_lost: Optional[Callable[[], Any]] = None

    # ------------------------------------------------------------------
    # what the channel calls

    def _start_content(self, length: Optional[int]) -> None:
        self.content = BytesIO()

    def start(self) -> None:
        """Serve the request (its whole body has arrived): Host and Origin,
        then the gate (secrets, the route)."""
        content = self.content
        if content is not None:
            content.seek(0)
        hosts = self.site.hosts
        if hosts is not None and hosts.refused(self):
            return
        out = self._out
        out[b"Server"] = SERVER
        out[b"Date"] = http_date()
        try:
            body = self.site.resource.render(self)
        except Exception:
            self.processingFailed(Failure())
            return
        if body is NOT_DONE_YET:
            return
        # An error answered at once by the gate (secrets, a bad path).
        self.setHeader(b"Content-Length", b"%d" % len(body))
        self.write(body)
        self.finish()

    def connectionLost(self, reason: Failure) -> None:
        self._disconnected = True
        self.channel = None  # as Twisted's: no cycle with the channel's list of requests
        cancel, self._on_lost = self._on_lost, None
        if cancel is not None:
            cancel()  # the client went away: stop waiting (a watch costs nothing further)
        notify, self._notify = self._notify, None
        for d in notify or ():
            d.errback(reason)

    # ------------------------------------------------------------------
    # what the routes call

    def getHeader(self, name: bytes) -> Optional[bytes]:
        values = self.requestHeaders._headers.get(name.lower())
        return values[-1] if values else None

    def setHeader(self, name: bytes, value: bytes) -> None:
        canonical = _CANONICAL.get(name)
        if canonical is None:
            canonical = _nameEncoder.encode(name)
            if len(_CANONICAL) < 64:
                _CANONICAL[name] = canonical
        if b"\r" in value or b"\n" in value:
            value = _sanitizeLinearWhitespace(value)
        self._out[canonical] = value

    def setResponseCode(self, code: int, message: Optional[bytes] = None) -> None:
        self.code = code
        self.code_message = message or RESPONSES.get(code, b"Unknown Status")

    def getClientAddress(self) -> Any:
        return self.channel.getPeer()

    def write(self, data: bytes) -> None:
        if not self.finished and not self._disconnected:
            self._body.append(data)

    def notifyFinish(self) -> "Deferred[None]":
        if self.finished:
            return succeed(None)
        if self._disconnected:
            return fail(Failure(ConnectionError("the client went away")))
        d: Deferred[None] = Deferred()
        if self._notify is None:
            self._notify = []
        self._notify.append(d)
        return d

    def finish(self) -> None:
        """Send the answer (one write) and let the channel go on to the next request."""
        if self.finished or self._disconnected:
            return
        self.finished = True
        out = self._out
        code = self.code
        body = b"".join(self._body)
        if (b"Content-Type" not in out and code not in NO_BODY_CODES
                and out.get(b"Content-Length") != b"0"):
            out[b"Content-Type"] = b"text/html"  # Twisted's default, never used by the routes
        if b"Content-Length" not in out and code not in NO_BODY_CODES:
            out[b"Content-Length"] = b"%d" % len(body)
        parts = [self.clientproto, b" %d " % code, self.code_message, b"\r\n"]
        for name, value in out.items():
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        if self.method != b"HEAD" and code not in NO_BODY_CODES:
            parts.append(body)
        channel = self.channel
        channel.write(b"".join(parts))
        notify, self._notify = self._notify, None
        channel.requestDone(self)
        for d in notify or ():
            d.callback(None)

    def serve_later(self, result: "Deferred[bytes]") -> None:
        """Answer with ``result``'s body once it fires; cancel it if the
        client leaves first (:func:`doozer.server.http.render.serve`'s
        work, without a ``notifyFinish`` Deferred and three closures per
        request: 10,000 watches woken by one write each pay for them)."""
        self._on_lost = result.cancel
        result.addCallbacks(self._answer, self._failed)

    def _answer(self, body: bytes) -> None:
        self._on_lost = None
        if not self.finished and not self._disconnected:
            self._body.append(body)
            self.finish()

    def _failed(self, failure: Failure) -> None:
        self._on_lost = None
        if self.finished or self._disconnected:  # nobody to tell
            if not failure.check(CancelledError):
                log.failure("bug while serving {path}", failure, path=self.path)
            return
        self.processingFailed(failure)

    def processingFailed(self, reason: Failure) -> None:
        """A bug: logged, answered 500 as ``twisted.web`` does."""
        log.failure("bug while serving {path}", reason, path=self.path)
        if self.finished or self._disconnected:
            return
        body = (b"<html><head><title>Processing Failed</title></head><body>"
                b"<b>Processing Failed</b></body></html>")
        self._body = [body]
        self.setResponseCode(500)
        self.setHeader(b"Content-Type", b"text/html")
        self.setHeader(b"Content-Length", b"%d" % len(body))
        self.finish()
