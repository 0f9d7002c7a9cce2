"""The operation record of the fault suite.

A soak run records every client operation as an :class:`Op` (invoke and
complete times, who ran it, what it asked, what came back), every watch call
as an :class:`Op` of kind ``watch``, and at the end the event log each node
holds as a :class:`NodeLog`.  :mod:`tests.faults.checker` judges them.

Everything here is plain data so that a soak's history can be saved as JSON
lines (:meth:`History.save`) and checked again later (:meth:`History.load`,
``python -m tests.faults.checker FILE``).

Outcomes:

- ``ok``: the server answered success (2xx).
- ``fail``: the server answered a definite refusal (4xx) — the operation had
  no effect.  ``code`` is the SPEC error code.  ``REV_MISMATCH`` carries the
  file's current rev in ``rev``; a ``NOENT`` read or delete means the file was
  missing.
- ``indeterminate``: no answer (timeout, connection lost) or a 5xx answer
  (``503 UNAVAILABLE``, ``READONLY``, ``500 OTHER``).  A write with this
  outcome may have taken effect at any point after its invoke — even after the
  end of the history — or not at all.  It is never treated as failed.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

# Operation kinds.
SET = "set"  #: unconditional write (``prec`` None or -1)
CAS = "cas"  #: write with a precondition rev (``prec`` >= 0)
DELETE = "delete"  #: delete, optionally with a precondition rev
READ = "read"  #: a ``consistent=1`` read of one file
WATCH = "watch"  #: one watch long-poll call; ``key`` is the glob
KINDS = (SET, CAS, DELETE, READ, WATCH)
WRITES = (SET, CAS, DELETE)

# Outcomes.
OK = "ok"
FAIL = "fail"
INDETERMINATE = "indeterminate"
OUTCOMES = (OK, FAIL, INDETERMINATE)

Value = bytes | None


def as_bytes(value: bytes | str | None) -> Value:
    """Normalise a value given as text (UTF-8) or bytes to bytes."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"a value must be bytes, str or None, not {type(value).__name__}")


def encode_value(value: Value) -> Any:
    """JSON form of a value: text if it is UTF-8, else ``{"base64": ...}``."""
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def decode_value(obj: Any) -> Value:
    """Inverse of :func:`encode_value`."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return base64.b64decode(obj["base64"])
    return obj.encode("utf-8")


def value_from_api(obj: Mapping[str, Any]) -> Value:
    """The bytes of an API object with ``value`` (and maybe ``encoding``)."""
    raw = obj.get("value")
    if raw is None:
        return None
    if obj.get("encoding") == "base64":
        return base64.b64decode(raw)
    return raw.encode("utf-8")


@dataclass(frozen=True, slots=True)
class Event:
    """One change as a watch or a node's log reports it (SPEC §3 watch)."""

    rev: int
    path: str
    op: str  # "set" | "del"
    value: Value = None

    def __post_init__(self) -> None:
        if self.op not in ("set", "del"):
            raise ValueError(f"event op must be 'set' or 'del', not {self.op!r}")
        object.__setattr__(self, "value", as_bytes(self.value))

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> "Event":
        """An event from a watch response's ``events`` item."""
        return cls(int(obj["rev"]), obj["path"], obj["op"], value_from_api(obj))

    def to_json(self) -> dict[str, Any]:
        """JSON form (see :func:`encode_value`)."""
        return {"rev": self.rev, "path": self.path, "op": self.op, "value": encode_value(self.value)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "Event":
        """Inverse of :meth:`to_json`."""
        return cls(int(obj["rev"]), obj["path"], obj["op"], decode_value(obj.get("value")))

    def __str__(self) -> str:
        val = "" if self.value is None else f" {self.value!r}"
        return f"rev {self.rev} {self.op} {self.path}{val}"


@dataclass(slots=True)
class Op:
    """One client operation.

    :param id: unique within the history.
    :param process: the worker/client that ran it (ops of one process do not
        overlap in time).
    :param kind: one of :data:`KINDS`.
    :param key: the file path (the glob for a watch).
    :param invoke: time the request was sent (any monotonic clock, seconds).
    :param complete: time the answer arrived; ``None`` if it never did (only
        allowed for indeterminate ops).
    :param outcome: ``ok`` / ``fail`` / ``indeterminate``.
    :param value: the value written (set/cas), or the value read (read ok).
    :param prec: precondition rev for writes (``None`` or -1 = clobber, 0 =
        only if missing, R = only if the file's rev <= R); for a watch the
        ``rev`` it asked for.
    :param code: the SPEC error code of a ``fail`` (or of an indeterminate
        5xx answer, for information).
    :param rev: the rev the answer carried: the new file rev (set/cas ok),
        the delete's rev (delete ok), the file's rev (read ok), the file's
        current rev (``REV_MISMATCH``), ``next`` (watch ok).
    :param events: the events a watch call returned.
    :param stream: identifies the watch stream a watch call belongs to
        (default: ``"<process> <glob>"``).
    """

    id: int
    process: int | str
    kind: str
    key: str
    invoke: float
    complete: float | None
    outcome: str
    value: Value = None
    prec: int | None = None
    code: str | None = None
    rev: int | None = None
    events: list[Event] | None = None
    stream: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown op kind {self.kind!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if self.complete is None and self.outcome != INDETERMINATE:
            raise ValueError(f"op {self.id}: only an indeterminate op may lack a completion time")
        self.value = as_bytes(self.value)

    @property
    def precondition(self) -> int:
        """The precondition rev, with clobber as -1."""
        return -1 if self.prec is None else self.prec

    @property
    def stream_id(self) -> str:
        """The watch stream this call belongs to."""
        return self.stream if self.stream is not None else f"{self.process} {self.key}"

    def to_json(self) -> dict[str, Any]:
        """JSON form, one line of a history file."""
        out: dict[str, Any] = {
            "type": "op",
            "id": self.id,
            "process": self.process,
            "kind": self.kind,
            "key": self.key,
            "invoke": self.invoke,
            "complete": self.complete,
            "outcome": self.outcome,
        }
        if self.value is not None:
            out["value"] = encode_value(self.value)
        for name in ("prec", "code", "rev", "stream"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.events is not None:
            out["events"] = [e.to_json() for e in self.events]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "Op":
        """Inverse of :meth:`to_json`."""
        events = obj.get("events")
        return cls(
            id=obj["id"],
            process=obj["process"],
            kind=obj["kind"],
            key=obj["key"],
            invoke=obj["invoke"],
            complete=obj.get("complete"),
            outcome=obj["outcome"],
            value=decode_value(obj.get("value")),
            prec=obj.get("prec"),
            code=obj.get("code"),
            rev=obj.get("rev"),
            events=None if events is None else [Event.from_json(e) for e in events],
            stream=obj.get("stream"),
        )

    def __str__(self) -> str:
        parts = [f"#{self.id} p{self.process} {self.kind} {self.key}"]
        if self.kind in (SET, CAS) or (self.kind == READ and self.outcome == OK):
            parts.append(repr(self.value))
        if self.kind in WRITES and self.prec is not None and self.prec >= 0:
            parts.append(f"if-rev<={self.prec}")
        if self.kind == WATCH:
            parts.append(f"from {self.prec}")
        res = self.outcome if self.code is None else f"{self.outcome} {self.code}"
        if self.rev is not None:
            res += f" rev={self.rev}"
        parts.append(f"-> {res}")
        end = "∞" if self.complete is None else f"{self.complete:.6f}"
        parts.append(f"[{self.invoke:.6f}, {end}]")
        return " ".join(parts)


@dataclass
class NodeLog:
    """A node's event log as dumped after a run.

    :param node: the node's id or address.
    :param events: the changes the node applied, by rev.
    :param start: the oldest rev the dump covers completely (every change
        with ``start <= rev <= end`` is in ``events``).  Default: the lowest
        event rev.
    :param end: the newest rev covered (normally the node's applied rev).
        Default: the highest event rev.
    """

    node: str
    events: list[Event]
    start: int | None = None
    end: int | None = None

    def __post_init__(self) -> None:
        if self.start is None:
            self.start = min((e.rev for e in self.events), default=1)
        if self.end is None:
            self.end = max((e.rev for e in self.events), default=0)

    @classmethod
    def from_tuples(
        cls,
        node: str,
        rows: Iterable[tuple[int, str, str, bytes | str | None]],
        start: int | None = None,
        end: int | None = None,
    ) -> "NodeLog":
        """A log from ``(rev, path, op, value)`` rows."""
        return cls(node, [Event(r, p, o, v) for r, p, o, v in rows], start, end)

    def covers(self, rev: int) -> bool:
        """Whether the dump says what happened at ``rev``."""
        assert self.start is not None and self.end is not None
        return self.start <= rev <= self.end

    def to_json(self) -> dict[str, Any]:
        """JSON form, one line of a history file."""
        return {
            "type": "log",
            "node": self.node,
            "start": self.start,
            "end": self.end,
            "events": [e.to_json() for e in self.events],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "NodeLog":
        """Inverse of :meth:`to_json`."""
        return cls(obj["node"], [Event.from_json(e) for e in obj["events"]], obj.get("start"), obj.get("end"))


@dataclass
class History:
    """Everything a soak recorded: client ops (incl. watch calls), node logs,
    the state of keys that existed before the run (``initial``: key ->
    ``(value, file rev)``; keys not named start missing), and the store's rev
    when recording began (``start_rev``; log changes at or before it are
    not expected to match a recorded write)."""

    ops: list[Op] = field(default_factory=list)
    logs: list[NodeLog] = field(default_factory=list)
    initial: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    start_rev: int = 0
    #: the lease holders' requests (:mod:`tests.faults.leaseops`)
    leases: list[Any] = field(default_factory=list)
    #: ``(start, end)`` times (the ops' clock) when a fault was active or
    #: the cluster was not yet healthy again after one (end ``inf``: never)
    faults: list[tuple[float, float]] = field(default_factory=list)

    def save(self, path: str | Path) -> None:
        """Write as JSON lines (one op / log / initial entry per line)."""
        with open(path, "w", encoding="utf-8") as fh:
            for line in self.iter_json():
                fh.write(json.dumps(line, sort_keys=True) + "\n")

    def iter_json(self) -> Iterator[dict[str, Any]]:
        """The JSON objects :meth:`save` writes."""
        yield {"type": "meta", "start_rev": self.start_rev,
               "faults": [[a, None if b == float("inf") else b] for a, b in self.faults]}
        for key, (value, rev) in sorted(self.initial.items()):
            yield {"type": "initial", "key": key, "value": encode_value(value), "rev": rev}
        for op in self.ops:
            yield op.to_json()
        for lop in self.leases:
            yield lop.to_json()
        for log in self.logs:
            yield log.to_json()

    @classmethod
    def load(cls, path: str | Path) -> "History":
        """Read a file written by :meth:`save`."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_lines(fh)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> "History":
        """Parse JSON lines (blank lines are skipped)."""
        hist = cls()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            kind = obj.get("type", "op")
            if kind == "op":
                hist.ops.append(Op.from_json(obj))
            elif kind == "log":
                hist.logs.append(NodeLog.from_json(obj))
            elif kind == "meta":
                hist.start_rev = int(obj.get("start_rev", 0))
                hist.faults = [(a, float("inf") if b is None else b) for a, b in obj.get("faults", [])]
            elif kind == "lease":
                from .leaseops import LeaseOp  # the lease record imports this module

                hist.leases.append(LeaseOp.from_json(obj))
            elif kind == "initial":
                value = decode_value(obj["value"])
                assert value is not None
                hist.initial[obj["key"]] = (value, int(obj["rev"]))
            else:
                raise ValueError(f"line {n}: unknown record type {kind!r}")
        return hist


class Recorder:
    """Builds a history while a test runs.

    ``op = rec.invoke(...)`` before sending a request, then exactly one of
    :meth:`ok`, :meth:`fail`, :meth:`indeterminate` (or :meth:`from_http`)
    when the answer (or the timeout) arrives.  Ops still pending when
    :meth:`history` is called are recorded as indeterminate with no
    completion time.  Thread-safe.

    :param clock: the time source (default :func:`time.monotonic`).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        self._pending: set[int] = set()

    def invoke(
        self,
        process: int | str,
        kind: str,
        key: str,
        *,
        value: bytes | str | None = None,
        prec: int | None = None,
        stream: str | None = None,
    ) -> Op:
        """Record the start of an operation; returns the op to complete."""
        with self._lock:
            op = Op(
                next(self._ids),
                process,
                kind,
                key,
                self._clock(),
                None,
                INDETERMINATE,
                value=as_bytes(value),
                prec=prec,
                stream=stream,
            )
            self._ops.append(op)
            self._pending.add(op.id)
            return op

    def _complete(self, op: Op) -> Op:
        with self._lock:
            if op.id not in self._pending:
                raise ValueError(f"op {op.id} completed twice")
            self._pending.discard(op.id)
            op.complete = self._clock()
            return op

    def ok(
        self,
        op: Op,
        *,
        rev: int | None = None,
        value: bytes | str | None = None,
        events: Sequence[Event] | None = None,
    ) -> Op:
        """Success.  ``rev``: new file rev / delete rev / read file rev /
        watch ``next``; ``value``: the value a read returned."""
        self._complete(op)
        op.outcome = OK
        op.rev = rev
        if op.kind == READ:
            op.value = as_bytes(value)
        if events is not None:
            op.events = list(events)
        return op

    def fail(self, op: Op, code: str, *, rev: int | None = None) -> Op:
        """Definite failure with SPEC error ``code`` (``rev``: the current
        file rev of a ``REV_MISMATCH``)."""
        self._complete(op)
        op.outcome = FAIL
        op.code = code
        op.rev = rev
        if op.kind == READ:
            op.value = None
        return op

    def indeterminate(self, op: Op, code: str | None = None) -> Op:
        """No definite answer (timeout, connection lost, 5xx)."""
        self._complete(op)
        op.outcome = INDETERMINATE
        op.code = code
        if op.kind == READ:
            op.value = None
        return op

    def from_http(self, op: Op, status: int | None, body: Mapping[str, Any] | None) -> Op:
        """Complete ``op`` from an HTTP answer (SPEC §3): ``status`` None
        means no answer (timeout / connection error).  2xx is ok, 4xx a
        definite failure, anything else indeterminate."""
        body = body or {}
        if status is None or status >= 500 or status < 200:
            return self.indeterminate(op, body.get("error"))
        if status >= 400:
            code = body.get("error", f"HTTP_{status}")
            rev = body.get("rev") if code == "REV_MISMATCH" else None
            return self.fail(op, code, rev=rev)
        if op.kind == WATCH:
            return self.ok(op, rev=body.get("next"), events=[Event.from_api(e) for e in body.get("events", [])])
        if op.kind == READ:
            return self.ok(op, rev=body.get("rev"), value=value_from_api(body))
        return self.ok(op, rev=body.get("rev"))

    def history(
        self,
        logs: Sequence[NodeLog] = (),
        initial: Mapping[str, tuple[bytes, int]] | None = None,
        start_rev: int = 0,
    ) -> History:
        """The history so far (pending ops stay indeterminate, unfinished)."""
        with self._lock:
            return History(list(self._ops), list(logs), dict(initial or {}), start_rev)
