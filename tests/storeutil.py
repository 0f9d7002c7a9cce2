"""Helpers for the store's tests: encoded mutations with fresh keys, outcomes, fired Deferreds."""

from __future__ import annotations

import itertools
from typing import Any

from doozer.store import Outcome
from doozer.store import mutation as mut

#: request numbers: each mutation a fresh (client, request) key
request_ids = itertools.count(1)

#: A deadline no test reaches (each apply is one instance).
FAR = 10**9


def S(path: str, value: bytes = b"v", rev: int = -1, until: int = FAR) -> bytes:
    """An encoded SET with a fresh key."""
    return mut.set_("t", next(request_ids), path, value, rev, until=until).encode()


def D(path: str, rev: int = -1, until: int = FAR) -> bytes:
    """An encoded DEL with a fresh key."""
    return mut.delete("t", next(request_ids), path, rev, until=until).encode()


def N(until: int = FAR) -> bytes:
    """An encoded NOP with a fresh key."""
    return mut.Mutation(mut.NOP, "t", next(request_ids), until=until).encode()


def code(outcome: Outcome) -> str | None:
    """The outcome's error code, None on success."""
    return outcome.error.code if outcome.error else None


def result(d: Any) -> Any:
    """The result a fired Deferred holds (fails if it has not fired)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    return out[0]
