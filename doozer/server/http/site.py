"""The HTTP site of a node's client ports: requests that cap their body and
check Host and Origin first, connections with deadlines and bounded output
(:mod:`doozer.server.http.channel`), an access log that is off unless asked.

The busiest routes are served by lean requests (:mod:`doozer.server.http.lean`)
when the resource is the API's gate; everything else by ``twisted.web``'s
:class:`CappedRequest` and Klein."""

from __future__ import annotations

from typing import Any, Optional

from twisted.web import server
from twisted.web.resource import IResource

from doozer.server.http.bodycap import BodyCap
from doozer.server.http.channel import Channel


class CappedRequest(BodyCap, server.Request):
    """A ``twisted.web`` request with the body cap (:class:`BodyCap`), which
    checks Host and Origin before anything else."""

    #: what the request's secret grants (:meth:`doozer.server.auth.Secrets.check_read`)
    doozer_access = "rw"
    #: whether the connection stays open after this answer (set by the channel)
    doozer_persistent = True
    #: the request line, kept by the channel until the body is in
    doozer_line: tuple[bytes, bytes, bytes] = (b"", b"", b"")
    channel: Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._init_cap()
        super().__init__(*args, **kwargs)

    def _start_content(self, length: Optional[int]) -> None:
        server.Request.gotLength(self, length)

    def start(self) -> None:
        """The whole request is in: serve it (the channel calls this in turn)."""
        self.requestReceived(*self.doozer_line)

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
        #: Names the direct route of a request that may skip twisted.web
        #: (:meth:`doozer.server.http.gate.Gate.direct`); None: every
        #: request is twisted.web's (another resource, or an access log,
        #: which logs twisted.web's requests).
        self.direct = None if access_log else getattr(resource, "direct", None)

    def log(self, request: Any) -> None:
        # Writing one access-log line per request costs about a quarter of
        # the read throughput, so it is opt-in (--access-log).
        if self.access_log:
            super().log(request)
