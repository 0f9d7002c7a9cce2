"""The HTTP site of a node's client ports: requests that cap their body and
check Host and Origin first, connections with deadlines and bounded output
(:mod:`doozer.server.http.channel`), an access log that is off unless asked."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any, Optional

from twisted.web import server
from twisted.web.resource import IResource

from doozer.errors import too_large
from doozer.server.http.channel import Channel


class CappedRequest(server.Request):
    """A request that stops buffering its body past the site's cap.

    Twisted buffers a body before the handler runs; this request keeps at
    most ``site.max_body`` bytes of it and flags the rest, so a huge or
    endless body never fills memory. Far past the cap the connection is
    answered 413 and closed.
    """

    doozer_too_large = False
    #: what the request's secret grants (:meth:`doozer.server.auth.Secrets.check_read`)
    doozer_access = "rw"
    _discarded = 0
    channel: Channel

    def _cap(self) -> int:
        return getattr(self.channel.site, "max_body", 1 << 20)

    def gotLength(self, length: Optional[int]) -> None:
        if length is not None and length > self._cap():
            self.doozer_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        cap = self._cap()
        content = self.content
        assert content is not None  # made by gotLength, before any chunk
        if not self.doozer_too_large and content.tell() + len(data) > cap:
            self.doozer_too_large = True
            self.content = content = BytesIO()
        if not self.doozer_too_large:
            content.write(data)
            return
        self._discarded += len(data)
        if self._discarded > 16 * cap + (1 << 20):
            self._abort_too_large(cap)

    def _abort_too_large(self, cap: int) -> None:
        transport = self.channel.transport
        if transport is None or getattr(self, "_aborted", False):
            return
        self._aborted = True
        body = json.dumps(too_large(cap).body()).encode()
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json; "
            b"charset=utf-8\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        transport.loseConnection()

    def process(self) -> None:
        # Host and Origin first: a request for another name, or from a page
        # of another origin, learns nothing, not even that a secret is needed.
        hosts = getattr(self.channel.site, "hosts", None)
        if hosts is None or not hosts.refused(self):
            super().process()


class Site(server.Site):
    """A Site with the body cap and an access log that is off unless asked for.

    :param resource: the root resource.
    :param max_body: largest request body buffered, in bytes.
    :param access_log: log one line per request.
    :param limits: the node's client limits (:class:`doozer.server.limits.Limits`):
        its connections' deadlines and output bound.
    :param hosts: the Host and Origin rules of this port
        (:class:`doozer.server.hosts.HostPolicy`); None answers every Host.
    :param node: the node, for ``X-Doozer-Rev`` on the answers the Site
        gives itself (421, 403).
    """

    # Twisted types this as its HTTP/2-negotiating wrapper's factory; any
    # HTTPChannel serves (the wrapper only picks between two of them).
    protocol = Channel  # type: ignore[assignment]

    def __init__(
        self,
        resource: IResource,
        max_body: int,
        access_log: bool = False,
        *,
        limits: Any = None,
        hosts: Any = None,
        node: Any = None,
    ) -> None:
        super().__init__(resource, requestFactory=CappedRequest)
        self.max_body = max_body
        self.access_log = access_log
        self.limits = limits
        self.hosts = hosts
        self.node = node

    def log(self, request: Any) -> None:
        # Writing one access-log line per request costs about a quarter of
        # the read throughput, so it is opt-in (--access-log).
        if self.access_log:
            super().log(request)
