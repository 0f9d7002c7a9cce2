"""The model the linearizability search (:mod:`tests.faults.lincheck`)
runs one key's ops against: a register with compare-and-set whose state is
``(exists, value, last write rev, rev exact?)``, and the ops compiled for it.

:func:`relevant` drops the ops that say nothing about the register, and
:func:`resolve_observed` turns an indeterminate write that a read saw into a
write that took effect."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from typing import Any, Sequence

from .history import CAS, DELETE, FAIL, INDETERMINATE, OK, READ, SET, WATCH, WRITES, Op


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

KIND_WRITE, KIND_DELETE, KIND_READ = 0, 1, 2  # compiled op kinds: write (set/cas), delete, read
OUT_OK, OUT_FAIL, OUT_IND = 0, 1, 2  # compiled outcomes
REV_MISMATCH, NOENT = "REV_MISMATCH", "NOENT"

# A compiled op: (kind, outcome, value, prec, rev, code)
Compiled = tuple[int, int, bytes | None, int, int | None, str | None]


def step(state: State, op: Compiled) -> State | None:
    """Apply one op to the register-with-CAS model.

    Returns the new state, or None if the op (with its recorded outcome)
    cannot happen in ``state``.  An indeterminate write given here is the
    branch where it *took effect* (succeeded); "never took effect" is the
    search simply not linearizing it.
    """
    kind, outcome, value, prec, rev, code = op
    exists, cur, last, exact = state
    if kind == KIND_READ:
        if outcome == OUT_OK:
            if not exists or cur != value:
                return None
            if rev is None:
                return state
            if exact:
                return state if rev == last else None
            return (True, cur, rev, True) if rev >= last else None
        return None if exists else state  # NOENT: the file was missing
    if outcome == OUT_FAIL:
        if code == NOENT:  # delete of a missing file
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
    if kind == KIND_DELETE and not exists:
        return None
    if rev is not None:
        if rev <= last:
            return None  # global revs increase in linearization order
        new_last, new_exact = rev, True
    else:
        new_last, new_exact = last + 1, False
    if kind == KIND_DELETE:
        return (False, None, new_last, new_exact)
    return (True, value, new_last, new_exact)


def compile_op(op: Op) -> Compiled:
    kind = {SET: KIND_WRITE, CAS: KIND_WRITE, DELETE: KIND_DELETE, READ: KIND_READ}[op.kind]
    outcome = {OK: OUT_OK, FAIL: OUT_FAIL, INDETERMINATE: OUT_IND}[op.outcome]
    rev = op.rev if outcome != OUT_IND else None
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
            return op.code == NOENT
        if op.kind == DELETE:
            return op.code in (NOENT, REV_MISMATCH)
        return op.code == REV_MISMATCH
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


def describe_state(state: State) -> str:
    exists, value, last, exact = state
    rel = "=" if exact else ">="
    if not exists:
        return f"missing (last write rev {rel} {last})"
    return f"{value!r} at file rev {rel} {last}"
