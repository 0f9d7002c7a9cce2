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
``"<HOST:PORT"`` drops only what comes from that address and
``">HOST:PORT"`` only what goes to it (a one-way loss). It is re-read at
most every :data:`REREAD_INTERVAL` seconds of the transport's clock, so a
test partitions and heals a node by rewriting its file.

When the variable is unset :func:`install` returns at once and changes
nothing: the transport's methods stay the class's own, so the hook costs
nothing on the hot path.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Mapping, Optional

from twisted.internet.interfaces import IReactorTime

from doozer.addr import format_addr

#: The environment variable naming the fault file.
ENV = "DOOZER_TEST_FAULTS"
#: Seconds between two reads of the fault file.
REREAD_INTERVAL = 0.2


Rules = tuple  # (addresses dropped from, addresses dropped to)
_NO_RULES: Rules = (frozenset(), frozenset())


def _parse(text: str) -> Rules:
    """``(dropped_from, dropped_to)``: the ``(host, port)`` pairs whose
    datagrams are dropped on arrival, and those dropped on sending."""
    dropped_from: set = set()
    dropped_to: set = set()
    try:
        items = json.loads(text) if text.strip() else []
    except ValueError:
        return _NO_RULES
    if not isinstance(items, list):
        return _NO_RULES
    for item in items:
        if not isinstance(item, str):
            continue
        way = item[:1] if item[:1] in ("<", ">") else ""
        host, sep, port = item[len(way):].rpartition(":")
        if not sep:
            continue
        try:
            addr = (host.strip("[]"), int(port))
        except ValueError:
            continue
        if way != ">":
            dropped_from.add(addr)
        if way != "<":
            dropped_to.add(addr)
    return frozenset(dropped_from), frozenset(dropped_to)


class FaultFile:
    """The blocked peer addresses, read from ``path`` via ``now()``."""

    def __init__(self, path: str, now: Callable[[], float], interval: float = REREAD_INTERVAL) -> None:
        self.path = path
        self.now = now
        self.interval = interval
        self._read_at = float("-inf")
        self._rules: Rules = _NO_RULES
        #: datagrams dropped, by ``"<HOST:PORT"`` (arriving) and ``">HOST:PORT"``
        self.dropped: dict[str, int] = {}

    def rules(self) -> Rules:
        """``(dropped_from, dropped_to)``, re-read when stale."""
        t = self.now()
        if t - self._read_at >= self.interval:
            self._read_at = t
            try:
                with open(self.path, encoding="utf-8") as fh:
                    self._rules = _parse(fh.read())
            except OSError:
                self._rules = _NO_RULES
        return self._rules

    def drops_from(self, addr: Any) -> bool:
        """Whether a datagram arriving from ``addr`` is dropped (counted)."""
        return self._drops(0, "<", addr)

    def drops_to(self, addr: Any) -> bool:
        """Whether a datagram sent to ``addr`` is dropped (counted)."""
        return self._drops(1, ">", addr)

    def _drops(self, way: int, mark: str, addr: Any) -> bool:
        dropped = self.rules()[way]
        if not dropped or tuple(addr[:2]) not in dropped:
            return False
        key = mark + format_addr(addr)
        self.dropped[key] = self.dropped.get(key, 0) + 1
        return True

    def debug_state(self) -> dict:
        """The rules as this node holds them now (not re-read: a rule held
        after its file was rewritten shows here), when they were read, and
        the datagrams dropped per address."""
        dropped_from, dropped_to = self._rules
        return {
            "from": sorted(map(format_addr, dropped_from)),
            "to": sorted(map(format_addr, dropped_to)),
            "read_at": self._read_at if self._read_at != float("-inf") else None,
            "dropped": dict(self.dropped),
        }


def install(
    transport: Any, clock: Optional[IReactorTime] = None, environ: Optional[Mapping[str, str]] = None
) -> Optional[FaultFile]:
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
        if faults.drops_to(addr):
            transport.stats["fault_dropped"] += 1
            return True  # lost on the way, as UDP may
        return write(data, addr)

    def faulty_receive(data: bytes, addr: Any) -> None:
        if faults.drops_from(addr):
            transport.stats["fault_dropped"] += 1
            return
        receive(data, addr)

    transport._write = faulty_write
    transport.datagramReceived = faulty_receive
    return faults
