"""Checkers for the fault suite: linearizability, node logs, watch streams.

They judge a recorded :class:`~tests.faults.history.History` and need no
running cluster.  Each returns a :class:`CheckResult` with a
:class:`Verdict` (``ok`` / ``fail`` / ``unknown``) and human-readable
problems; :func:`check_history` runs all that apply.

Linearizability (:func:`check_linearizability`)
    Per key (P-compositionality: linearizability is local, so every key is
    searched on its own), a Wing–Gong/Lowe depth-first search for a
    linearization of the key's operations against a register-with-CAS model
    whose state is ``(exists, value, last write rev, rev exact?)``.  The
    search memoizes ``(linearized determinate ops, state)`` and treats
    indeterminate writes as optional ops with an infinite completion time
    (they may take effect at any point after their invoke, or never).  A
    configuration that has applied a superset of the indeterminate ops of an
    already-visited configuration with the same determinate set and a state
    that allows no more is pruned (it can only do less); see
    :func:`_check_key` for the other reductions.  Revs returned by the server are used:
    known-rev operations on a key are ordered by rev before the search (a
    write with rev R precedes every op that observed a rev >= R, etc.), and
    the model requires every successful write's rev to exceed the previous
    write's.  The rev of an indeterminate write that took effect is unknown;
    the model keeps a lower bound and pins it when a later read or
    ``REV_MISMATCH`` reveals it.  Cross-key rules (global revs unique, and
    increasing in real time) are checked separately.

Logs (:func:`check_logs`)
    Every pair of node logs agrees on the revs both cover; every acknowledged
    write is at its acknowledged rev, with its value, in every log covering
    that rev; every change in the logs to a key the history wrote is a write
    somebody issued; every read's (value, file rev) is what the log has at
    that rev.

Watches (:func:`check_watches`)
    Every watch stream (the calls of one client resuming from ``next``) is
    strictly ordered, without duplicates, and equals the common log filtered
    by its glob between its first requested rev and its last ``next``.
"""

from __future__ import annotations

import argparse
import enum
import math
import sys
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .history import (
    CAS,
    DELETE,
    FAIL,
    INDETERMINATE,
    OK,
    READ,
    SET,
    WATCH,
    WRITES,
    Event,
    History,
    NodeLog,
    Op,
)

try:  # the project's own glob semantics, when available
    from doozer.store.path import compile_glob as _project_compile_glob
except ImportError:  # pragma: no cover - only before doozer/store/path.py exists
    _project_compile_glob = None


class Verdict(str, enum.Enum):
    """The result of a check."""

    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"  # e.g. search budget exhausted

    @staticmethod
    def combine(verdicts: Iterable["Verdict"]) -> "Verdict":
        """FAIL if any failed, else UNKNOWN if any is unknown, else OK."""
        vs = set(verdicts)
        if Verdict.FAIL in vs:
            return Verdict.FAIL
        if Verdict.UNKNOWN in vs:
            return Verdict.UNKNOWN
        return Verdict.OK


@dataclass
class CheckResult:
    """What one checker found.

    :param name: which check.
    :param verdict: ok / fail / unknown.
    :param problems: one line per violation (or per reason for unknown).
    :param info: counters and extras (e.g. ``steps``, ``unverified``).
    """

    name: str
    verdict: Verdict = Verdict.OK
    problems: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True only for a definite pass."""
        return self.verdict is Verdict.OK

    def fail(self, problem: str) -> None:
        """Record a violation."""
        self.verdict = Verdict.FAIL
        self.problems.append(problem)

    def unknown(self, reason: str) -> None:
        """Record that the check could not decide (unless it already failed)."""
        if self.verdict is not Verdict.FAIL:
            self.verdict = Verdict.UNKNOWN
        self.problems.append(reason)

    def summary(self, limit: int = 20) -> str:
        """A few lines for a test failure message or a soak's output."""
        lines = [f"{self.name}: {self.verdict.value}"]
        lines += [f"  - {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


@dataclass
class Report:
    """The results of :func:`check_history`."""

    results: list[CheckResult]

    @property
    def verdict(self) -> Verdict:
        """The combined verdict."""
        return Verdict.combine(r.verdict for r in self.results)

    @property
    def ok(self) -> bool:
        """True only when every check passed definitely."""
        return self.verdict is Verdict.OK

    def summary(self, limit: int = 20) -> str:
        """Every check's summary."""
        return "\n".join(r.summary(limit) for r in self.results)


# ---------------------------------------------------------------------------
# Linearizability
# ---------------------------------------------------------------------------

#: Model state: (exists, value, last write rev, last rev exact?).  ``last`` is
#: the rev of the key's last successful write (set or delete; 0 initially);
#: when ``exact`` is false it is only a lower bound (an indeterminate write
#: took effect with an unknown rev).  The file's rev is ``last`` if it exists,
#: else 0.
State = tuple[bool, bytes | None, int, bool]
MISSING: State = (False, None, 0, True)

#: The value of indeterminate writes whose value no read returned (to the
#: model they are interchangeable).  Equal to no bytes value.
UNOBSERVED: Any = type("Unobserved", (), {"__repr__": lambda self: "<unobserved value>"})()

_W, _D, _R = 0, 1, 2  # compiled op kinds: write (set/cas), delete, read
_OKC, _FAILC, _INDC = 0, 1, 2  # compiled outcomes
_REV_MISMATCH, _NOENT = "REV_MISMATCH", "NOENT"

# A compiled op: (kind, outcome, value, prec, rev, code)
_Compiled = tuple[int, int, bytes | None, int, int | None, str | None]


def step(state: State, op: _Compiled) -> State | None:
    """Apply one op to the register-with-CAS model.

    Returns the new state, or None if the op (with its recorded outcome)
    cannot happen in ``state``.  An indeterminate write given here is the
    branch where it *took effect* (succeeded); "never took effect" is the
    search simply not linearizing it.
    """
    kind, outcome, value, prec, rev, code = op
    exists, cur, last, exact = state
    if kind == _R:
        if outcome == _OKC:
            if not exists or cur != value:
                return None
            if rev is None:
                return state
            if exact:
                return state if rev == last else None
            return (True, cur, rev, True) if rev >= last else None
        return None if exists else state  # NOENT: the file was missing
    if outcome == _FAILC:
        if code == _NOENT:  # delete of a missing file
            return None if exists else state
        # REV_MISMATCH: the file's rev was > prec (a missing file counts 0).
        if prec < 0 or not exists:
            return None
        if rev is None:
            if exact:
                return state if last > prec else None
            return state if last > prec else (True, cur, prec + 1, False)
        if rev <= prec:
            return None
        if exact:
            return state if rev == last else None
        return (True, cur, rev, True) if rev >= last else None
    # Success (ok, or an indeterminate op that took effect).
    if prec >= 0 and exists and last > prec:
        return None  # the file's rev (>= last) would exceed prec
    if kind == _D and not exists:
        return None
    if rev is not None:
        if rev <= last:
            return None  # global revs increase in linearization order
        new_last, new_exact = rev, True
    else:
        new_last, new_exact = last + 1, False
    if kind == _D:
        return (False, None, new_last, new_exact)
    return (True, value, new_last, new_exact)


def _compile(op: Op) -> _Compiled:
    kind = {SET: _W, CAS: _W, DELETE: _D, READ: _R}[op.kind]
    outcome = {OK: _OKC, FAIL: _FAILC, INDETERMINATE: _INDC}[op.outcome]
    rev = op.rev if outcome != _INDC else None
    return (kind, outcome, op.value, op.precondition, rev, op.code)


def relevant(op: Op) -> bool:
    """Whether ``op`` constrains its key's register (see module docs).

    Dropped: watches; indeterminate reads (no information); failures other
    than ``REV_MISMATCH`` and ``NOENT`` (definite non-effects such as
    ``BAD_PATH`` that say nothing about the state).
    """
    if op.kind == WATCH:
        return False
    if op.outcome == INDETERMINATE:
        return op.kind in WRITES
    if op.outcome == FAIL:
        if op.kind == READ:
            return op.code == _NOENT
        if op.kind == DELETE:
            return op.code in (_NOENT, _REV_MISMATCH)
        return op.code == _REV_MISMATCH
    return True


def resolve_observed(ops: Sequence[Op]) -> list[Op]:
    """Turn indeterminate writes that a read observed into required writes.

    If an ok read returned value v and exactly one write of the key (not
    counting definite failures) wrote v, that write took effect: it becomes
    an ``ok`` op with the rev the reads reported (when they agree) and an
    infinite completion time.  This keeps the search anchored on revs; it
    changes no verdict.  ``ops`` are one key's relevant ops.
    """
    writers: dict[bytes | None, int] = defaultdict(int)
    for o in ops:
        if o.kind in (SET, CAS) and o.outcome != FAIL:
            writers[o.value] += 1
    seen: dict[bytes | None, set[int | None]] = defaultdict(set)
    for o in ops:
        if o.kind == READ and o.outcome == OK:
            seen[o.value].add(o.rev)
    out = []
    for o in ops:
        if o.outcome == INDETERMINATE and o.kind in (SET, CAS) and writers[o.value] == 1 and o.value in seen:
            revs = seen[o.value]
            rev = next(iter(revs)) if len(revs) == 1 else None
            o = replace(o, outcome=OK, rev=rev, complete=math.inf)
        out.append(o)
    return out


def _describe_state(state: State) -> str:
    exists, value, last, exact = state
    rel = "=" if exact else ">="
    if not exists:
        return f"missing (last write rev {rel} {last})"
    return f"{value!r} at file rev {rel} {last}"


@dataclass
class _KeyOutcome:
    verdict: Verdict
    steps: int
    message: str = ""


def _order_constraints(det: Sequence[Op], comp: Sequence[_Compiled]) -> list[int]:
    """Bitmasks of the ops that must precede each op, from returned revs.

    Writes with a known rev are totally ordered by rev; an op that observed
    the file at rev r (a read, a ``REV_MISMATCH``) comes after the write with
    rev <= r and before any write with rev > r.  Each rule is implied by the
    model, so this only prunes the search.
    """
    anchored: list[tuple[int, int, int]] = []  # (rev, 0 write / 1 observer, index)
    for i, c in enumerate(comp):
        kind, outcome, _value, _prec, rev, code = c
        if rev is None or outcome == _INDC:
            continue
        if outcome == _OKC and kind in (_W, _D):
            anchored.append((rev, 0, i))
        elif (outcome == _OKC and kind == _R and rev > 0) or (code == _REV_MISMATCH and rev > 0):
            anchored.append((rev, 1, i))
    anchored.sort()
    preds = [0] * len(det)
    before = 0
    j = 0
    while j < len(anchored):
        k = j
        while k < len(anchored) and anchored[k][:2] == anchored[j][:2]:
            k += 1
        group = 0
        for _, _, i in anchored[j:k]:
            preds[i] = before
            group |= 1 << i
        before |= group
        j = k
    return preds


def _subsumes(a_last: int, a_exact: bool, b_last: int, b_exact: bool) -> bool:
    """Whether a state with (a_last, a_exact) allows everything one with
    (b_last, b_exact) does (same existence and value assumed): an unknown
    rev with lower bound m can be any rev >= m."""
    if a_exact:
        return b_exact and a_last == b_last
    return a_last <= b_last


def _check_key(
    key: str,
    ops: Sequence[Op],
    initial: State,
    max_steps: int,
    deadline: float,
) -> _KeyOutcome:
    """The WGL/porcupine search for one key (see module docs).

    A node of the depth-first search is a configuration: the determinate ops
    linearized (bitmask ``lin``), the indeterminate ops applied (``ilin``)
    and the model state.  Its children are the eligible ops the model
    accepts.  Three reductions keep it small, none changing the verdict:

    - an eligible determinate op that leaves the state unchanged (a read, a
      failure) is linearized at once without trying alternatives (moving it
      to the front of any valid completion keeps that completion valid);
    - a configuration is pruned when an already visited one has the same
      ``lin``, the same existence and value, applied a subset of its
      indeterminate ops and has a weaker rev constraint (:func:`_subsumes`);
    - ops ordered by their returned revs are not tried out of that order
      (:func:`_order_constraints`);
    - indeterminate writes whose value no read returned get one common value
      (:data:`UNOBSERVED`); of the eligible indeterminate ops of one kind and
      value that would succeed, only the one with the tightest precondition
      is tried at each node (once eligible, a looser one can later do
      whatever a tighter one could, and they yield the same state).

    Indeterminate writes a read observed were made required beforehand
    (:func:`resolve_observed`).
    """
    det = sorted((o for o in ops if o.outcome != INDETERMINATE), key=lambda o: (o.invoke, o.id))
    ind = sorted((o for o in ops if o.outcome == INDETERMINATE), key=lambda o: (o.invoke, o.id))
    n = len(det)
    if n == 0:
        return _KeyOutcome(Verdict.OK, 0)
    dcomp = [_compile(o) for o in det]
    # An indeterminate write whose value no read returned is, to the model,
    # the same as any other such write: give them one value (so chains of
    # them collapse under subsumption) and try one per class at each node.
    observed = {c[2] for c in dcomp if c[0] == _R and c[1] == _OKC}
    icomp = []
    for o in ind:
        kind, outcome, value, prec, _rev, _code = _compile(o)
        if kind == _W and value not in observed:
            value = UNOBSERVED
        icomp.append((kind, outcome, value, prec, None, None))
    invokes = [o.invoke for o in det]
    ind_invokes = [o.invoke for o in ind]
    completes = [o.complete for o in det]
    comp_order = sorted(range(n), key=lambda i: (completes[i], i))
    preds = _order_constraints(det, dcomp)
    full = (1 << n) - 1
    steps = 0

    def children(state: State, lin: int, ilin: int, p: int, q: int) -> list[tuple[int, State]]:
        """The (op, new state) pairs to try from a configuration, in order:
        determinate ops first, indeterminate ones (encoded ~j) last, so that
        subsumption sees the configurations without them first."""
        nonlocal steps
        # Eligible: invoked no later than the earliest completion among the
        # determinate ops not yet linearized (ties count as concurrent).
        horizon = completes[comp_order[p]]
        out: list[tuple[int, State]] = []
        for i in range(q, bisect_right(invokes, horizon)):
            if (lin >> i) & 1 or preds[i] & ~lin:
                continue
            steps += 1
            ns = step(state, dcomp[i])
            if ns is None:
                continue
            if ns == state:
                return [(i, ns)]
            out.append((i, ns))
        # Of the indeterminate ops that would succeed, try only the weakest of
        # each chain (same kind and value; the weakest has the tightest
        # precondition): all yield the same state, and a stronger one kept
        # for later can do whatever the weaker one could.
        weakest: dict[tuple[int, Any], tuple[float, int, State]] = {}
        for j in range(bisect_right(ind_invokes, horizon)):
            if (ilin >> j) & 1:
                continue
            kind, _outcome, value, prec, _rev, _code = icomp[j]
            cap = math.inf if prec < 0 else prec
            chain = (kind, value)
            have = weakest.get(chain)
            if have is not None and have[0] <= cap:
                continue
            steps += 1
            ns = step(state, icomp[j])
            if ns is not None:
                weakest[chain] = (cap, j, ns)
        out.extend((~j, ns) for _cap, j, ns in weakest.values())
        return out

    lin = ilin = 0
    p = q = 0
    depth = 0
    state = initial
    # (lin, exists, value) -> [(ilin, last, exact)] of visited configurations
    seen: dict[tuple[int, bool, bytes | None], list[tuple[int, int, bool]]] = {
        (0, state[0], state[1]): [(0, state[2], state[3])]
    }
    stack: list[tuple[list[tuple[int, State]], int, State, int, int, int, int, int]] = []
    cands = children(state, lin, ilin, p, q)
    ci = 0
    next_clock = 4096
    best = (-1, "", "")
    while True:
        advanced = False
        while ci < len(cands):
            c, new_state = cands[ci]
            ci += 1
            nlin, nilin = (lin | (1 << c), ilin) if c >= 0 else (lin, ilin | (1 << ~c))
            exists, value, last, exact = new_state
            visited = seen.setdefault((nlin, exists, value), [])
            if any(m & ~nilin == 0 and _subsumes(ml, me, last, exact) for m, ml, me in visited):
                continue
            visited.append((nilin, last, exact))
            stack.append((cands, ci, state, lin, ilin, p, q, depth))
            state, lin, ilin = new_state, nlin, nilin
            if c >= 0:
                depth += 1
                if lin == full:
                    return _KeyOutcome(Verdict.OK, steps)
                while p < n and (lin >> comp_order[p]) & 1:
                    p += 1
                while q < n and (lin >> q) & 1:
                    q += 1
            cands = children(state, lin, ilin, p, q)
            ci = 0
            advanced = True
            break
        if steps >= next_clock:
            next_clock = steps + 4096
            if time.monotonic() > deadline:
                steps = max_steps + 1
        if steps > max_steps:
            return _KeyOutcome(
                Verdict.UNKNOWN,
                steps,
                f"key {key}: unknown (search budget exhausted after {steps} steps; "
                f"{n} determinate + {len(ind)} indeterminate ops; deepest partial "
                f"linearization {max(best[0], depth)}/{n}{best[2]})",
            )
        if advanced:
            continue
        if depth > best[0]:
            stuck = det[comp_order[p]]
            best = (
                depth,
                f"key {key}: not linearizable; the longest partial linearization has {depth}/{n} "
                f"determinate ops and ends in state {_describe_state(state)}; from there no op "
                f"can be linearized before {stuck} (or {stuck} itself cannot be)",
                f", stuck before {stuck}",
            )
        if not stack:
            return _KeyOutcome(Verdict.FAIL, steps, best[1])
        cands, ci, state, lin, ilin, p, q, depth = stack.pop()


def quick_violations(key: str, ops: Sequence[Op], initial: State) -> list[str]:
    """Violations of one key found without a search (exact, not heuristic).

    - a read returned a value that no write of the key (ok or indeterminate)
      wrote and the key did not start with;
    - a read (or ``REV_MISMATCH``) saw file rev r although a write with a
      higher rev was acknowledged before it was invoked (stale read);
    - a read answered NOENT although a set was acknowledged before it was
      invoked and no delete could have come in between (lost write).

    The search would find these too, but can take long to prove them when
    many indeterminate ops are around; these messages are also clearer.
    """
    problems: list[str] = []
    values = {o.value for o in ops if o.kind in (SET, CAS) and o.outcome != FAIL}
    if initial[0]:
        values.add(initial[1])
    deletes = [o for o in ops if o.kind == DELETE and o.outcome != FAIL]

    def latest_before(writes: list[Op]) -> tuple[list[float], list[Op | None]]:
        # completion times, and the highest-rev write completed by each
        writes.sort(key=lambda w: w.complete)  # type: ignore[arg-type, return-value]
        times, best, top = [], [], None
        for w in writes:
            if top is None or w.rev > top.rev:  # type: ignore[operator]
                top = w
            times.append(w.complete)
            best.append(top)
        return times, best  # type: ignore[return-value]

    known = [o for o in ops if o.kind in WRITES and o.outcome == OK and o.rev is not None]
    k_times, k_best = latest_before(list(known))
    s_times, s_best = latest_before([o for o in known if o.kind != DELETE])
    for o in ops:
        if o.kind == READ and o.outcome == OK and o.value not in values:
            problems.append(f"key {key}: {o} read a value no write wrote")
        observed = (o.kind == READ and o.outcome == OK) or (o.outcome == FAIL and o.code == _REV_MISMATCH)
        if observed and o.rev is not None:
            i = bisect_left(k_times, o.invoke)
            w = k_best[i - 1] if i else None
            if w is not None and w.rev > o.rev:  # type: ignore[operator]
                problems.append(f"key {key}: stale read: {o} saw rev {o.rev} after {w} was acknowledged")
        if o.kind == READ and o.outcome == FAIL and o.code == _NOENT:
            i = bisect_left(s_times, o.invoke)
            w = s_best[i - 1] if i else None
            if w is None:
                continue
            between = any(
                d.invoke <= o.complete  # type: ignore[operator]
                and (d.outcome == INDETERMINATE or d.complete >= w.invoke)  # type: ignore[operator]
                and not (d.outcome == OK and d.rev is not None and d.rev < w.rev)  # type: ignore[operator]
                for d in deletes
            )
            if not between:
                problems.append(f"key {key}: lost write: {o} found the file missing after {w} was acknowledged")
    return problems


def _check_rev_order(ops: Sequence[Op], result: CheckResult) -> None:
    """Cross-key rules: a global rev is used by one write only; a write
    acknowledged before another is invoked has the smaller rev; a read (or
    ``REV_MISMATCH``) that reports file rev r names a rev that, if some
    acknowledged write took it, is a set of the same key (and value)."""
    writes = [o for o in ops if o.kind in WRITES and o.outcome == OK and o.rev is not None]
    by_rev: dict[int, Op] = {}
    for o in writes:
        other = by_rev.get(o.rev)  # type: ignore[arg-type]
        if other is not None:
            result.fail(f"rev {o.rev} acknowledged to two writes: {other} and {o}")
        else:
            by_rev[o.rev] = o  # type: ignore[index]
    by_complete = sorted(writes, key=lambda o: o.complete)  # type: ignore[arg-type, return-value]
    j = 0
    top: Op | None = None
    for o in sorted(writes, key=lambda o: o.invoke):
        while j < len(by_complete) and by_complete[j].complete < o.invoke:  # type: ignore[operator]
            w = by_complete[j]
            if top is None or w.rev > top.rev:  # type: ignore[operator]
                top = w
            j += 1
        if top is not None and o.rev <= top.rev:  # type: ignore[operator]
            result.fail(f"rev order: {top} was acknowledged before {o} started, yet has a rev not below it")
    for o in ops:
        observed = (o.kind == READ and o.outcome == OK) or (o.outcome == FAIL and o.code == _REV_MISMATCH)
        if not observed or not o.rev:
            continue
        w = by_rev.get(o.rev)
        if w is None:
            continue
        if w.key != o.key or w.kind == DELETE:
            result.fail(f"{o} reports file rev {o.rev}, but that rev belongs to {w}")
        elif o.kind == READ and w.value != o.value:
            result.fail(f"{o} read a value other than the one {w} wrote at that rev")


def check_linearizability(
    ops: Sequence[Op],
    *,
    initial: Mapping[str, tuple[bytes, int]] | None = None,
    max_steps: int = 2_000_000,
    time_limit: float = 60.0,
    quick: bool = True,
) -> CheckResult:
    """Check that the ops of a history are linearizable (see module docs).

    :param ops: all recorded ops (watches and irrelevant failures are
        ignored; keys are files, none of which is a directory of another).
    :param initial: key -> ``(value, file rev)`` for keys that existed before
        the history; other keys start missing.
    :param max_steps: model steps allowed per key before answering unknown.
    :param time_limit: seconds allowed in all before answering unknown.
    :param quick: run :func:`quick_violations` first (a key that fails them
        is not searched); off, every verdict comes from the search.
    """
    result = CheckResult("linearizability")
    initial = initial or {}
    _check_rev_order(ops, result)
    per_key: dict[str, list[Op]] = defaultdict(list)
    for o in ops:
        if relevant(o):
            per_key[o.key].append(o)
    deadline = time.monotonic() + time_limit
    total = 0
    verdicts: dict[str, str] = {}
    for key in sorted(per_key):
        init: State = MISSING
        if key in initial:
            value, rev = initial[key]
            init = (True, value, rev, True)
        found = quick_violations(key, per_key[key], init) if quick else []
        if found:
            verdicts[key] = Verdict.FAIL.value
            for problem in found:
                result.fail(problem)
            continue
        out = _check_key(key, resolve_observed(per_key[key]), init, max_steps, deadline)
        total += out.steps
        verdicts[key] = out.verdict.value
        if out.verdict is Verdict.FAIL:
            result.fail(out.message)
        elif out.verdict is Verdict.UNKNOWN:
            result.unknown(out.message)
    result.info.update(keys=len(per_key), ops=sum(map(len, per_key.values())), steps=total, per_key=verdicts)
    return result


# ---------------------------------------------------------------------------
# Node logs
# ---------------------------------------------------------------------------


@dataclass
class CommonLog:
    """The union of the node logs: what happened at each covered rev.

    :param events: rev -> the change at that rev (covered revs without an
        entry were no-ops, failed writes or bookkeeping without a change);
        at a rev with several changes (a lease's end deletes its files and
        ``/ctl/lease/<id>`` at one rev, a transaction applies its ops at
        one rev) the first by path.
    :param coverage: sorted, disjoint, inclusive ``(start, end)`` rev ranges
        that some node's dump covers.
    :param more: rev -> every change at that rev, sorted by path, for the
        revs with more than one.
    """

    events: dict[int, Event]
    coverage: list[tuple[int, int]]
    more: dict[int, tuple[Event, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._starts = [s for s, _e in self.coverage]
        self._revs: list[int] | None = None

    def at(self, rev: int) -> tuple[Event, ...]:
        """Every change at ``rev`` (sorted by path; empty if none)."""
        many = self.more.get(rev)
        if many is not None:
            return many
        one = self.events.get(rev)
        return () if one is None else (one,)

    @classmethod
    def from_logs(cls, logs: Sequence[NodeLog]) -> "CommonLog":
        """Union of ``logs`` (where they disagree, the first one wins)."""
        changes: dict[int, tuple[Event, ...]] = {}
        for log in logs:
            for rev, evs in group_by_rev(log).items():
                changes.setdefault(rev, evs)
        events = {r: evs[0] for r, evs in changes.items()}
        more = {r: evs for r, evs in changes.items() if len(evs) > 1}
        spans = sorted((log.start, log.end) for log in logs if log.start <= log.end)  # type: ignore[operator]
        coverage: list[tuple[int, int]] = []
        for s, e in spans:  # type: ignore[misc]
            if coverage and s <= coverage[-1][1] + 1:
                coverage[-1] = (coverage[-1][0], max(coverage[-1][1], e))
            else:
                coverage.append((s, e))
        return cls(events, coverage, more)

    def covers(self, rev: int) -> bool:
        """Whether some node's dump says what happened at ``rev``."""
        i = bisect_right(self._starts, rev) - 1
        return i >= 0 and rev <= self.coverage[i][1]

    def covered(self, lo: int, hi: int) -> int:
        """How many revs ``lo <= rev < hi`` are covered."""
        return sum(max(0, min(e + 1, hi) - max(s, lo)) for s, e in self.coverage)

    @property
    def revs(self) -> list[int]:
        """The revs with a change, sorted."""
        if self._revs is None or len(self._revs) != len(self.events):
            self._revs = sorted(self.events)
        return self._revs

    def between(self, lo: int, hi: int, match: Callable[[str], bool] | None = None) -> list[Event]:
        """Events with ``lo <= rev < hi`` (matching ``match``), by rev."""
        revs = self.revs
        found = (e for r in revs[bisect_left(revs, lo):bisect_left(revs, hi)] for e in self.at(r))
        return [e for e in found if match is None or match(e.path)]


def disorder(events: Iterable[Event]) -> Iterator[tuple[bool, Event, Event]]:
    """Where a run of events, a log's or a watch stream's, breaks rev order:
    ``(True, prev, e)`` where ``e``'s rev is below the one before it,
    ``(False, prev, e)`` where ``e`` changes a path its rev changed already
    (one rev may hold several changes, one per path: a transaction's)."""
    prev: Event | None = None
    paths: set[str] = set()  # the paths of the events at prev's rev
    for e in events:
        if prev is not None and e.rev < prev.rev:
            yield True, prev, e
        elif prev is not None and e.rev == prev.rev and e.path in paths:
            yield False, prev, e
        if prev is None or e.rev != prev.rev:
            paths = set()
        paths.add(e.path)
        prev = e


def group_by_rev(log: NodeLog) -> dict[int, tuple[Event, ...]]:
    """The changes of ``log`` within its coverage, by rev (sorted by path)."""
    out: dict[int, list[Event]] = defaultdict(list)
    for e in log.events:
        if log.covers(e.rev):
            out[e.rev].append(e)
    return {r: tuple(sorted(evs, key=lambda e: e.path)) for r, evs in out.items()}


def _show(evs: tuple[Event, ...] | None) -> str:
    if not evs:
        return "nothing"
    return " + ".join(map(str, evs))


def check_logs(logs: Sequence[NodeLog], ops: Sequence[Op] = (), start_rev: int = 0) -> CheckResult:
    """Check node logs against each other and against the history.

    ``start_rev``: the store's rev when recording began; changes before it
    are not expected to match a recorded write (no phantom check there).

    Every log is compared with the union of all (:class:`CommonLog`) over
    the revs it covers, which is the same as comparing every pair on the
    revs both cover, in time linear in the events (a long run has dozens
    of logs: one per node process and stretch).

    ``result.info["common"]`` is the :class:`CommonLog` (for
    :func:`check_watches`); ``result.info["unverified"]`` counts acknowledged
    writes whose rev no log covers.
    """
    result = CheckResult("logs")
    for log in logs:
        for backwards, prev, e in disorder(log.events):
            result.fail(f"node {log.node}: log not strictly ordered by rev at {prev.rev} then {e.rev}"
                        if backwards else f"node {log.node}: {e.path} changed twice at rev {e.rev}")
    common = CommonLog.from_logs(logs)
    result.info["common"] = common
    revs = common.revs
    event_revs = [[e.rev for e in log.events] for log in logs]

    def origin(r: int) -> int:
        """The log that gave the union its event at ``r`` (the first one
        covering ``r`` with an event there), for the messages."""
        for j, log in enumerate(logs):
            if log.covers(r):
                k = bisect_left(event_revs[j], r)
                if k < len(event_revs[j]) and event_revs[j][k] == r:
                    return j
        return -1

    # diffs[i]: rev -> log i's own changes there (None: it has none), where
    # they differ from the union.
    diffs: list[dict[int, tuple[Event, ...] | None]] = []
    for i, log in enumerate(logs):
        own: dict[int, tuple[Event, ...] | None] = {}
        mine = set()
        for rev, evs in group_by_rev(log).items():
            mine.add(rev)
            if common.at(rev) != evs:
                own[rev] = evs
        lo, hi = bisect_left(revs, log.start), bisect_right(revs, log.end)  # type: ignore[arg-type]
        if hi - lo != len(mine):  # the union has changes in this log's range that it lacks
            for r in revs[lo:hi]:
                if r not in mine:
                    own[r] = None
        diffs.append(own)
        by_other: dict[int, list[int]] = defaultdict(list)
        for r in sorted(own):
            by_other[origin(r)].append(r)
        for j, rs in sorted(by_other.items()):
            other = logs[j] if j >= 0 else log
            lo_r, hi_r = max(log.start, other.start), min(log.end, other.end)  # type: ignore[type-var]
            r = rs[0]
            result.fail(
                f"nodes {other.node} and {log.node} diverge at {len(rs)} revs in [{lo_r}, {hi_r}], "
                f"first at rev {r}: {_show(common.at(r))} vs {_show(own[r])}"
            )
    any_diff = set().union(*diffs) if diffs else set()
    unverified = 0
    written: dict[str, set[bytes | None]] = defaultdict(set)
    deleted: set[str] = set()
    for o in ops:
        if o.kind in (SET, CAS) and o.outcome != FAIL:
            written[o.key].add(o.value)
        elif o.kind == DELETE and o.outcome != FAIL:
            deleted.add(o.key)
        if o.kind not in WRITES or o.outcome != OK or o.rev is None:
            continue
        want = Event(o.rev, o.key, "del" if o.kind == DELETE else "set", None if o.kind == DELETE else o.value)
        if not common.covers(o.rev):
            unverified += 1
            continue
        if o.rev not in any_diff and want in common.at(o.rev):
            continue  # every log covering the rev has it (they agree with the union there)
        for i, log in enumerate(logs):
            if not log.covers(o.rev):
                continue
            got = diffs[i][o.rev] if o.rev in diffs[i] else common.at(o.rev)
            if not got:
                result.fail(f"node {log.node}: acknowledged write lost: {o} is not in the log at rev {o.rev}")
            elif want not in got:
                result.fail(f"node {log.node}: acknowledged write {o} but the log has {_show(got)} at rev {o.rev}")
    for o in ops:  # reads and REV_MISMATCHes that named a file rev
        observed = (o.kind == READ and o.outcome == OK) or (o.outcome == FAIL and o.code == _REV_MISMATCH)
        if not observed or not o.rev or not common.covers(o.rev):
            continue
        here = common.at(o.rev)
        hit = next((e for e in here if e.path == o.key), None)
        if not here:
            result.fail(f"{o} reports file rev {o.rev}, but nothing changed at that rev")
        elif hit is None or hit.op != "set" or (o.kind == READ and hit.value != o.value):
            result.fail(f"{o} reports file rev {o.rev}, but the log has {_show(here)} at that rev")
    keys = set(written) | deleted
    first_at: dict[tuple[str, bytes | None], int] = {}
    again: dict[tuple[str, bytes | None], list[int]] = defaultdict(list)
    for e in (e for r in revs for e in common.at(r)):
        if e.path not in keys or e.rev <= start_rev:
            continue
        if e.op == "set" and e.value not in written[e.path]:
            result.fail(f"phantom write: the log has {e}, a value no client wrote to {e.path}")
        elif e.op == "del" and e.path not in deleted:
            result.fail(f"phantom delete: the log has {e}, but no client deleted {e.path}")
        elif e.op == "set":
            pv = (e.path, e.value)
            if first_at.setdefault(pv, e.rev) != e.rev:
                again[pv].append(e.rev)
    if again:
        # A value at more revs than writes of it (ok or indeterminate) were
        # issued: one write applied twice (every value is unique in a run).
        writers: dict[tuple[str, bytes | None], int] = defaultdict(int)
        for o in ops:
            if o.kind in (SET, CAS) and o.outcome != FAIL and (o.key, o.value) in again:
                writers[(o.key, o.value)] += 1
        for (path, value), later in again.items():
            at = [first_at[(path, value)], *later]
            if len(at) > writers[(path, value)]:
                n = writers[(path, value)]
                result.fail(
                    f"value applied twice: {value!r}, written to {path} by {n} write{'s' if n != 1 else ''}, "
                    f"is in the log at {len(at)} revs: {', '.join(map(str, at[:10]))}"
                )
    result.info["unverified"] = unverified
    return result


# ---------------------------------------------------------------------------
# Watch streams
# ---------------------------------------------------------------------------


def compile_glob(glob: str) -> Callable[[str], bool]:
    """SPEC §2 glob matcher: the project's, or a local translation."""
    if _project_compile_glob is not None:
        return _project_compile_glob(glob)
    import re

    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    rx = re.compile("".join(out), re.DOTALL)
    return lambda path: rx.fullmatch(path) is not None


def _segments(calls: Sequence[Op], result: CheckResult, sid: str) -> list[list[Op]]:
    """Split one stream's calls into runs that resume from ``next``.  A
    failed or indeterminate call ends a run (the client may restart
    anywhere); otherwise a call not resuming from the previous ``next`` is a
    harness error (reported) and also starts a new run."""
    segs: list[list[Op]] = []
    cur: list[Op] = []
    for c in calls:
        if c.outcome != OK:
            if cur:
                segs.append(cur)
            cur = []
            continue
        if cur and c.prec != cur[-1].rev:
            result.fail(f"watch stream {sid}: {c} does not resume from the previous next={cur[-1].rev}")
            segs.append(cur)
            cur = []
        cur.append(c)
    if cur:
        segs.append(cur)
    return segs


def check_watches(ops: Sequence[Op], common: CommonLog | None = None) -> CheckResult:
    """Check every watch stream in ``ops`` (against ``common`` if given).

    ``result.info["unverified"]`` counts stream revs that no log covered.
    """
    result = CheckResult("watches")
    streams: dict[str, list[Op]] = defaultdict(list)
    for o in ops:
        if o.kind == WATCH:
            streams[o.stream_id].append(o)
    unverified = 0
    checked = 0
    by_glob: dict[str, list[int]] = {}
    for sid, calls in sorted(streams.items()):
        calls.sort(key=lambda o: (o.invoke, o.id))
        match = compile_glob(calls[0].key)
        for seg in _segments(calls, result, sid):
            got: list[Event] = []
            for c in seg:
                evs = c.events or []
                asked = c.prec if c.prec is not None else 0
                for e in evs:
                    if not match(e.path):
                        result.fail(f"watch stream {sid}: {e} does not match the glob")
                    if e.rev < asked:
                        result.fail(f"watch stream {sid}: {e} is older than the rev asked for ({asked})")
                if c.rev is None:
                    result.fail(f"watch stream {sid}: {c} has no next")
                elif evs and c.rev != evs[-1].rev + 1:
                    result.fail(f"watch stream {sid}: next={c.rev} is not one past the last event ({evs[-1].rev})")
                elif not evs and c.rev < asked:
                    result.fail(f"watch stream {sid}: next={c.rev} is below the rev asked for ({asked})")
                got.extend(evs)
            for backwards, prev, e in disorder(got):
                result.fail(f"watch stream {sid}: events out of order: {prev} then {e}" if backwards
                            else f"watch stream {sid}: duplicated event at rev {e.rev}: {prev} then {e}")
            if common is None:
                continue
            if seg[0].prec is not None:
                lo = seg[0].prec
            else:  # asked for "changes from now on": starts where it first saw one
                lo = got[0].rev if got else (seg[0].rev or 0)
            hi = seg[-1].rev if seg[-1].rev is not None else lo
            checked += 1
            received: dict[tuple[int, str], Event] = {}
            for e in got:
                received.setdefault((e.rev, e.path), e)
            if hi > lo:
                unverified += (hi - lo) - common.covered(lo, hi)
            # What the stream got, against the log ...
            for (r, path), have in sorted(received.items()):
                if not lo <= r < hi or not common.covers(r):
                    continue
                at = [e for e in common.at(r) if match(e.path)]
                want = next((e for e in at if e.path == path), None)
                if want is None and not at:
                    result.fail(f"watch stream {sid}: got {have}, but the log has no such change at rev {r}")
                elif want != have:
                    result.fail(f"watch stream {sid}: got {have}, but the log has {_show(tuple(at))}")
            # ... and what the log has for the glob, against the stream.
            if calls[0].key not in by_glob:
                by_glob[calls[0].key] = _matching_revs(common, match)
            revs = by_glob[calls[0].key]
            for r in revs[bisect_left(revs, lo):bisect_left(revs, hi)]:
                for e in common.at(r):
                    if (r, e.path) not in received and match(e.path):
                        result.fail(f"watch stream {sid}: gap: missed {e} (stream covers revs {lo}..{hi - 1})")
    result.info.update(streams=len(streams), segments_checked=checked, unverified=unverified)
    return result


def _matching_revs(common: CommonLog, match: Callable[[str], bool]) -> list[int]:
    """The revs of the common log's changes whose path matches (sorted)."""
    memo: dict[str, bool] = {}
    out = []
    for r in common.revs:
        for e in common.at(r):
            hit = memo.get(e.path)
            if hit is None:
                hit = memo[e.path] = bool(match(e.path))
            if hit:
                out.append(r)
                break
    return out


# ---------------------------------------------------------------------------
# Everything
# ---------------------------------------------------------------------------


def check_history(history: History, **lin_options: Any) -> Report:
    """Run every check that applies to ``history``: linearizability always,
    logs when node logs were dumped, watches when watch calls were recorded,
    leases (:mod:`tests.faults.leasecheck`) when lease holders ran.
    ``lin_options`` go to :func:`check_linearizability`."""
    results = [check_linearizability(history.ops, initial=history.initial, **lin_options)]
    common = None
    if history.logs:
        logs = check_logs(history.logs, history.ops, history.start_rev)
        common = logs.info["common"]
        results.append(logs)
    if any(o.kind == WATCH for o in history.ops):
        results.append(check_watches(history.ops, common))
    if history.leases:
        from .leasecheck import check_leases  # which imports this module

        results.append(check_leases(history, common))
    return Report(results)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.faults.checker HISTORY.jsonl``: exit 0 ok, 1 fail,
    2 unknown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("history", help="JSON-lines history written by History.save")
    parser.add_argument("--max-steps", type=int, default=2_000_000)
    parser.add_argument("--time-limit", type=float, default=300.0)
    args = parser.parse_args(argv)
    report = check_history(History.load(args.history), max_steps=args.max_steps, time_limit=args.time_limit)
    print(report.summary())
    return {Verdict.OK: 0, Verdict.FAIL: 1, Verdict.UNKNOWN: 2}[report.verdict]


if __name__ == "__main__":
    sys.exit(main())
