"""Linearizability of a recorded history (:func:`check_linearizability`).

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
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .history import CAS, DELETE, FAIL, INDETERMINATE, OK, READ, SET, WRITES, Op
from .linmodel import (KIND_DELETE, KIND_READ, KIND_WRITE, MISSING, NOENT, OUT_IND, OUT_OK,
                       REV_MISMATCH, UNOBSERVED, Compiled, State, compile_op, describe_state,
                       relevant, resolve_observed, step)
from .results import CheckResult, Verdict


@dataclass
class _KeyOutcome:
    verdict: Verdict
    steps: int
    message: str = ""


def _order_constraints(det: Sequence[Op], comp: Sequence[Compiled]) -> list[int]:
    """Bitmasks of the ops that must precede each op, from returned revs.

    Writes with a known rev are totally ordered by rev; an op that observed
    the file at rev r (a read, a ``REV_MISMATCH``) comes after the write with
    rev <= r and before any write with rev > r.  Each rule is implied by the
    model, so this only prunes the search.
    """
    anchored: list[tuple[int, int, int]] = []  # (rev, 0 write / 1 observer, index)
    for i, c in enumerate(comp):
        kind, outcome, _value, _prec, rev, code = c
        if rev is None or outcome == OUT_IND:
            continue
        if outcome == OUT_OK and kind in (KIND_WRITE, KIND_DELETE):
            anchored.append((rev, 0, i))
        elif (outcome == OUT_OK and kind == KIND_READ and rev > 0) or (code == REV_MISMATCH and rev > 0):
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
    dcomp = [compile_op(o) for o in det]
    # An indeterminate write whose value no read returned is, to the model,
    # the same as any other such write: give them one value (so chains of
    # them collapse under subsumption) and try one per class at each node.
    observed = {c[2] for c in dcomp if c[0] == KIND_READ and c[1] == OUT_OK}
    icomp = []
    for o in ind:
        kind, outcome, value, prec, _rev, _code = compile_op(o)
        if kind == KIND_WRITE and value not in observed:
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
                f"determinate ops and ends in state {describe_state(state)}; from there no op "
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
        observed = (o.kind == READ and o.outcome == OK) or (o.outcome == FAIL and o.code == REV_MISMATCH)
        if observed and o.rev is not None:
            i = bisect_left(k_times, o.invoke)
            w = k_best[i - 1] if i else None
            if w is not None and w.rev > o.rev:  # type: ignore[operator]
                problems.append(f"key {key}: stale read: {o} saw rev {o.rev} after {w} was acknowledged")
        if o.kind == READ and o.outcome == FAIL and o.code == NOENT:
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
        observed = (o.kind == READ and o.outcome == OK) or (o.outcome == FAIL and o.code == REV_MISMATCH)
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
