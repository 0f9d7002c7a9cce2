"""Admitting client writes: bounded pending proposals, fair shares, the quota.

A write a node has proposed and not yet seen decided holds memory (the
sequencer's queue, the datagrams that carry it) and a place in the log's
order. Unbounded, one client pipelining large writes makes every other
client's write wait behind it until it times out [4,000 pipelined 30 KB
SETs made another client's 1-byte PUT time out]. So (SPEC §12):

- the node holds at most ``max_count`` such writes and ``max_bytes`` of
  them; past either, a write is refused at once with ``503 BUSY`` (it was
  not proposed: safe to retry);
- one client holds at most a fair share of either: with ``k`` clients
  writing, ``1 / (k + 1)`` of the limit, which always leaves room for one
  more client (a client with nothing pending may always send one write
  that fits the node's limit);
- a write that would take the store (files and kept history) past
  ``quota`` bytes is refused with ``507 NOSPACE``; deletes always pass.

A write is released when the node sees it decided (applied, refused after
its deadline, or settled by a snapshot), not when its writer stops
waiting: until then it is still in the queue.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

from doozer.errors import DoozerError

#: Defaults of ``--max-pending``, ``--max-pending-bytes`` and ``--quota-bytes``.
MAX_PENDING = 10_000
MAX_PENDING_BYTES = 16 * 1024 * 1024
QUOTA_BYTES = 1024 * 1024 * 1024


class Admission:
    """The pending writes of one node, by client.

    :param max_count: writes pending at most, node-wide.
    :param max_bytes: bytes of writes pending at most, node-wide.
    :param quota: bytes the store may hold (files and history).
    :param store_size: the store's current size in bytes.
    """

    def __init__(
        self,
        max_count: int = MAX_PENDING,
        max_bytes: int = MAX_PENDING_BYTES,
        quota: int = QUOTA_BYTES,
        store_size: Callable[[], int] = lambda: 0,
    ) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.quota = quota
        self.store_size = store_size
        self.count = 0
        self.bytes = 0
        self._clients: dict[Hashable, list[int]] = {}  # client -> [count, bytes]
        self._requests: dict[int, tuple[Hashable, int]] = {}  # request -> (client, bytes)
        self.refused: dict[str, int] = {"busy": 0, "busy_share": 0, "nospace": 0}

    def admit(self, request: int, client: Hashable, size: int, grows: bool) -> None:
        """Take request ``request`` of ``client`` (``size`` bytes), or raise.

        :param grows: whether the write may grow the store (a SET).
        :raises DoozerError: ``BUSY`` or ``NOSPACE``; nothing is taken then.
        """
        if grows and self.store_size() + self.bytes + size > self.quota:
            self.refused["nospace"] += 1
            raise DoozerError(
                "NOSPACE",
                f"the write would take the store past its quota of {self.quota} bytes "
                "(--quota-bytes); delete files or raise the quota",
            )
        if self.count + 1 > self.max_count or self.bytes + size > self.max_bytes:
            self.refused["busy"] += 1
            raise DoozerError(
                "BUSY",
                "this node holds as many pending writes as it takes; the write was "
                "not proposed and is safe to retry (later, or at another member)",
            )
        own = self._clients.get(client)
        if own is not None:
            writers = len(self._clients)
            if own[0] + 1 > self.max_count / (writers + 1) or own[1] + size > self.max_bytes / (writers + 1):
                self.refused["busy_share"] += 1
                raise DoozerError(
                    "BUSY",
                    "this client holds its fair share of the node's pending writes; "
                    "the write was not proposed and is safe to retry once some are answered",
                )
        else:
            own = self._clients[client] = [0, 0]
        own[0] += 1
        own[1] += size
        self.count += 1
        self.bytes += size
        self._requests[request] = (client, size)

    def release(self, request: int) -> None:
        """Request ``request`` was decided (or will never be): free its place."""
        entry = self._requests.pop(request, None)
        if entry is None:
            return
        client, size = entry
        self.count -= 1
        self.bytes -= size
        own = self._clients[client]
        own[0] -= 1
        own[1] -= size
        if own[0] == 0:
            del self._clients[client]

    def clear(self) -> None:
        """Forget everything (the node stopped)."""
        self._clients.clear()
        self._requests.clear()
        self.count = self.bytes = 0

    def state(self) -> dict[str, Any]:
        """Figures for diagnosis and metrics."""
        return {
            "pending": self.count,
            "pending_bytes": self.bytes,
            "writers": len(self._clients),
            "refused": dict(self.refused),
        }
