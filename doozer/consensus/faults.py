"""TEST-ONLY network fault hook for the UDP transport (the fault suite).

Never use this in production. It exists so that ``tests/faults/`` can
partition real ``twistd doozer`` processes on one machine without root
(no iptables) and without a proxy between the peers.

It is off unless the environment variable ``DOOZER_TEST_FAULTS`` names a
file. Then :func:`install` wraps the transport's send and receive paths (of
that one :class:`~doozer.consensus.transport.UDPTransport` instance) so that
every datagram to or from an address listed in the file is dropped (and
counted in ``stats["fault_dropped"]``). The file is a JSON list of
``"HOST:PORT"`` strings (a missing, empty or unreadable file drops nothing);
it is re-read at most every :data:`REREAD_INTERVAL` seconds of the
transport's clock, so a test partitions and heals a node by rewriting its
file.

When the variable is unset :func:`install` returns at once and changes
nothing: the transport's methods stay the class's own, so the hook costs
nothing on the hot path.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Mapping, Optional

#: The environment variable naming the fault file.
ENV = "DOOZER_TEST_FAULTS"
#: Seconds between two reads of the fault file.
REREAD_INTERVAL = 0.2


def _parse(text: str) -> frozenset:
    """The ``(host, port)`` pairs of a fault file's contents."""
    out = set()
    try:
        items = json.loads(text) if text.strip() else []
    except ValueError:
        return frozenset()
    if not isinstance(items, list):
        return frozenset()
    for item in items:
        if not isinstance(item, str) or ":" not in item:
            continue
        host, _, port = item.rpartition(":")
        try:
            out.add((host.strip("[]"), int(port)))
        except ValueError:
            continue
    return frozenset(out)


class FaultFile:
    """The set of blocked peer addresses, read from ``path`` via ``now()``."""

    def __init__(self, path: str, now: Callable[[], float], interval: float = REREAD_INTERVAL) -> None:
        self.path = path
        self.now = now
        self.interval = interval
        self._read_at = float("-inf")
        self._blocked: frozenset = frozenset()

    def blocked(self) -> frozenset:
        """The addresses to drop datagrams to and from (re-read when stale)."""
        t = self.now()
        if t - self._read_at >= self.interval:
            self._read_at = t
            try:
                with open(self.path, encoding="utf-8") as fh:
                    self._blocked = _parse(fh.read())
            except OSError:
                self._blocked = frozenset()
        return self._blocked

    def drops(self, addr: Any) -> bool:
        """Whether a datagram to or from ``addr`` is dropped."""
        blocked = self.blocked()
        return bool(blocked) and tuple(addr[:2]) in blocked


def install(transport: Any, clock: Any = None, environ: Optional[Mapping[str, str]] = None) -> Optional[FaultFile]:
    """Wrap ``transport`` when ``DOOZER_TEST_FAULTS`` is set (TEST-ONLY).

    :returns: the :class:`FaultFile`, or ``None`` (and no change) when the
        variable is unset or empty.
    """
    path = (os.environ if environ is None else environ).get(ENV)
    if not path:
        return None
    now = clock.seconds if clock is not None else time.monotonic
    faults = FaultFile(path, now)
    transport.stats.setdefault("fault_dropped", 0)
    write = transport._write
    receive = transport.datagramReceived

    def faulty_write(data: bytes, addr: Any) -> bool:
        if faults.drops(addr):
            transport.stats["fault_dropped"] += 1
            return True  # lost on the way, as UDP may
        return write(data, addr)

    def faulty_receive(data: bytes, addr: Any) -> None:
        if faults.drops(addr):
            transport.stats["fault_dropped"] += 1
            return
        receive(data, addr)

    transport._write = faulty_write
    transport.datagramReceived = faulty_receive
    return faults
