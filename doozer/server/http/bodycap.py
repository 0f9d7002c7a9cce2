"""A request body kept under a cap while it is read (``--max-value``, ``--max-body``).

Shared by the two kinds of request a client port makes
(:class:`doozer.server.http.site.CappedRequest`, twisted.web's, and
:class:`doozer.server.http.lean.LeanRequest`), so that both refuse a
huge body the same way, while reading it.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any, Optional

from doozer.errors import too_large


class BodyCap:
    """The body cap of every request of a client port (twisted.web's and the lean one).

    Twisted buffers a body before the handler runs; a capped request keeps
    at most ``site.max_body`` bytes of it and flags the rest, so a huge or
    endless body never fills memory. Far past the cap the connection is
    answered 413 and closed. ``_start_content`` makes the buffer.
    """

    __slots__ = ("channel", "content", "doozer_too_large", "_discarded", "_aborted")
    channel: Any
    content: Any
    doozer_too_large: bool
    _discarded: int
    _aborted: bool

    def _init_cap(self) -> None:
        self.doozer_too_large = False
        self._discarded = 0
        self._aborted = False

    def _cap(self) -> int:
        return getattr(self.channel.site, "max_body", 1 << 20)

    def _start_content(self, length: Optional[int]) -> None:
        raise NotImplementedError

    def gotLength(self, length: Optional[int]) -> None:
        if length is not None and length > self._cap():
            self.doozer_too_large = True
            length = 0
        self._start_content(length)

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
        if transport is None or self._aborted:
            return
        self._aborted = True
        body = json.dumps(too_large(cap).body()).encode()
        # Through the channel: after any answer it holds back (its cork).
        self.channel.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json; "
            b"charset=utf-8\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        transport.loseConnection()
