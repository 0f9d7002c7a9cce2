"""One keep-alive HTTP/1.1 connection for the fault suite's asyncio clients
(:mod:`tests.faults.fastload`) and node-log followers
(:mod:`tests.faults.followers`): one request at a time, its answer read
whole (``Content-Length``, chunked, or until close), a timer per request.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Optional


class HTTPError(Exception):
    """A response that could not be parsed."""


class Timeout(Exception):
    """No complete answer within the request's timeout."""


class Conn:
    """One keep-alive HTTP/1.1 connection (one request at a time)."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None
        self.expired = False

    def reset(self, addr: str) -> None:
        """Close, and aim the next connection at ``addr``."""
        self.close()
        self.addr = addr
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)

    @property
    def open(self) -> bool:
        return self.writer is not None

    async def connect(self, timeout: float = 2.0) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=1 << 20), timeout)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
        self.reader = self.writer = None

    def _expire(self) -> None:
        self.expired = True
        if self.writer is not None:
            self.writer.transport.abort()

    async def request(self, method: str, path: str, body: Optional[bytes] = None,
                      timeout: float = 10.0) -> tuple[int, Any]:
        """Send one request on the open connection and read its answer:
        (status, JSON body or None). Raises on any trouble, :class:`Timeout`
        when the answer is not complete within ``timeout`` (the caller
        closes the connection). The timeout is a timer that aborts the
        connection, cheaper than a task per request (``asyncio.wait_for``)."""
        assert self.writer is not None
        timer = asyncio.get_running_loop().call_later(timeout, self._expire)
        try:
            return await self._request(method, path, body)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if self.expired:
                raise Timeout(f"no answer within {timeout} s") from None
            raise
        finally:
            timer.cancel()

    async def _request(self, method: str, path: str, body: Optional[bytes]) -> tuple[int, Any]:
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.addr}\r\n"
        if body is not None:
            head += f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
        self.writer.write((head + "\r\n").encode("latin-1") + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise HTTPError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            data = b"".join(chunks)
        elif status in (204, 304) or method == "HEAD":
            data = b""
        else:
            data = await self.reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        ctype = headers.get("content-type", "")
        return status, (json.loads(data) if ctype.startswith("application/json") and data else None)
