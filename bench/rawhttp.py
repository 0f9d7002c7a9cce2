"""Raw HTTP/1.1 answers on asyncio streams, for the benchmarks' load generators.

No HTTP library: the least CPU a Python driver can spend per request, so
that a single load-generator process is not what limits the servers.
"""

from __future__ import annotations

import asyncio


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One answer on a keep-alive connection: its status and its body (a
    ``Content-Length`` body, or a chunked one joined)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at)
        return status, await reader.readexactly(int(lower[at + 15:end]))
    body = b""
    if b"chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += (await reader.readexactly(size + 2))[:-2]
            if size == 0:
                break
    return status, body
