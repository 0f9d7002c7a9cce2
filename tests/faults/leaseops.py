"""The lease record of the fault suite (SPEC §9): what each lease holder did.

The lease holders of :mod:`tests.faults.leaseload` record every lease request
as a :class:`LeaseOp`, on the same monotonic clock as the client operations
of :class:`~tests.faults.history.Recorder` (``time.monotonic`` of the test
process), so that :mod:`tests.faults.leasecheck` can compare a keepalive's
send time with the time a watcher saw the lease's end.

Kinds:

- ``grant``: ``POST /v1/lease``; ``lease`` the id answered, ``ttl``, ``rev``
  the grant's rev.
- ``keepalive``: ``POST /v1/lease/<id>/keepalive``; ok (200), fail
  (``NOENT``: the lease was gone) or indeterminate (no answer, 5xx).
- ``revoke``: ``DELETE /v1/lease/<id>``; ``rev`` the rev of the end.
- ``takeover``: the election write: a ``POST /v1/txn`` (compare the key's rev
  0, set it with the lease) or a ``PUT ?rev=0&lease=<id>``; ``value`` the
  value written (unique), ``rev`` its rev when ok.
- ``silence``: not a request: the holder stops renewing from ``invoke`` on
  (its last answer came before it); it only reads from then on.
- ``probe``: a ``consistent=1`` read of ``/ctl/lease/<id>``: ok (the lease
  was there at a point after ``invoke``) or fail ``NOENT`` (gone before
  ``complete``).

Outcomes are those of :mod:`tests.faults.history`: ``ok`` (2xx), ``fail``
(4xx, a definite refusal), ``indeterminate`` (no answer or a 5xx; the request
may still take effect later).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from .history import FAIL, INDETERMINATE, OK, OUTCOMES

GRANT = "grant"
KEEPALIVE = "keepalive"
REVOKE = "revoke"
TAKEOVER = "takeover"
SILENCE = "silence"
PROBE = "probe"
LEASE_KINDS = (GRANT, KEEPALIVE, REVOKE, TAKEOVER, SILENCE, PROBE)


@dataclass(slots=True)
class LeaseOp:
    """One lease request of one holder (see the module docs)."""

    id: int
    process: str
    kind: str
    lease: Optional[str]
    invoke: float
    complete: Optional[float]
    outcome: str
    ttl: Optional[int] = None
    code: Optional[str] = None
    rev: Optional[int] = None
    value: Optional[str] = None
    node: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in LEASE_KINDS:
            raise ValueError(f"unknown lease op kind {self.kind!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if self.complete is None and self.outcome != INDETERMINATE:
            raise ValueError(f"lease op {self.id}: only an indeterminate op may lack a completion time")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "lease"}
        for name in self.__slots__:
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "LeaseOp":
        fields = {k: v for k, v in obj.items() if k != "type"}
        fields.setdefault("complete", None)
        fields.setdefault("lease", None)  # a grant with no answer names none
        return cls(**fields)

    def __str__(self) -> str:
        end = "∞" if self.complete is None else f"{self.complete:.3f}"
        what = self.outcome if self.code is None else f"{self.outcome} {self.code}"
        if self.rev is not None:
            what += f" rev={self.rev}"
        ttl = f" ttl={self.ttl}" if self.ttl is not None else ""
        return f"#{self.id} {self.process} {self.kind} {self.lease}{ttl} -> {what} [{self.invoke:.3f}, {end}]"


class LeaseLog:
    """Records lease ops while a run goes on (thread-safe); the clock must be
    the :class:`~tests.faults.history.Recorder`'s."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.ops: list[LeaseOp] = []

    def invoke(self, process: str, kind: str, lease: Optional[str], **extra: Any) -> LeaseOp:
        """Record the start of a request (just before it is written)."""
        with self._lock:
            op = LeaseOp(next(self._ids), process, kind, lease, self.clock(), None, INDETERMINATE, **extra)
            self.ops.append(op)
            return op

    def mark(self, process: str, kind: str, lease: Optional[str], **extra: Any) -> LeaseOp:
        """An instant with no request (``silence``)."""
        op = self.invoke(process, kind, lease, **extra)
        op.complete, op.outcome = op.invoke, OK
        return op

    def answer(self, op: LeaseOp, status: Optional[int], body: Optional[Mapping[str, Any]]) -> LeaseOp:
        """Complete ``op`` from an HTTP answer (``status`` None: none came)."""
        op.complete = self.clock()
        body = body if isinstance(body, Mapping) else {}
        if status is None or status >= 500 or status < 200:
            op.outcome, op.code = INDETERMINATE, body.get("error") or (None if status is None else f"HTTP_{status}")
            return op
        if status >= 400:
            op.outcome, op.code = FAIL, body.get("error", f"HTTP_{status}")
            if op.code == "REV_MISMATCH" and isinstance(body.get("rev"), int):
                op.rev = body["rev"]
            return op
        op.outcome = OK
        if isinstance(body.get("rev"), int):
            op.rev = body["rev"]
        if op.kind == GRANT:
            lease, ttl = body.get("id"), body.get("ttl")
            op.lease = lease if isinstance(lease, str) else None
            op.ttl = ttl if isinstance(ttl, int) else op.ttl
        return op

    def lost(self, op: LeaseOp, why: str) -> LeaseOp:
        """No answer (timeout, lost connection): indeterminate."""
        op.complete, op.outcome, op.code = self.clock(), INDETERMINATE, why
        return op
