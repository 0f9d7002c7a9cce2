"""A client's transaction checked before it is proposed (SPEC §10).

Whatever can be known without the store is refused here, so that it costs
no rev and no consensus round: too many compares or ops, a bad path, a path
named by two ops, an op on what clients may not write, a value over
``--max-value``, a malformed lease id. What depends on the store (a
compare's rev, ``ISDIR``, ``NOTDIR``, ``NOENT``, a lease that does not
exist) is the store's answer when the transaction is applied
(:mod:`doozer.store.txn`).

Every refusal names what failed as the store's do: ``index`` (counted in
the list named by ``in``: ``"compare"`` or ``"ops"``) and ``path``.
"""

from __future__ import annotations

from typing import Iterable

from doozer.errors import DoozerError, too_large
from doozer.store import mutation
from doozer.store.cal import CAL_PREFIX, client_may_write
from doozer.store.leases import LEASE_ID
from doozer.store.mutation import MAX_COMPARE, MAX_OPS, Op
from doozer.store.path import validate_path

Compare = tuple[str, int]

#: The largest rev a compare may name (what a mutation's encoding holds).
MAX_REV = 2**63 - 1


def check(
    compare: Iterable[Compare], ops: Iterable[Op], max_value: int
) -> tuple[tuple[Compare, ...], tuple[Op, ...]]:
    """The transaction's compares and ops as proposed, or the first reason
    it cannot be.

    :param max_value: the largest value one op may set (``--max-value``).
    :raises DoozerError: ``BAD_ARG`` (counts, a rev below -1, a path named
        twice, a bad lease id or op kind), ``BAD_PATH``, ``FORBIDDEN`` (a
        path clients may not write, a CAL slot, a lease file) or
        ``TOO_LARGE`` (a value), with ``index``, ``path`` and ``in`` when
        one compare or op is at fault.
    """
    compares = tuple(compare)
    op_list = tuple(ops)
    if len(compares) > MAX_COMPARE:
        raise DoozerError("BAD_ARG", f"a transaction has at most {MAX_COMPARE} compares, "
                          f"not {len(compares)}")
    if len(op_list) > MAX_OPS:
        raise DoozerError("BAD_ARG", f"a transaction has at most {MAX_OPS} ops, "
                          f"not {len(op_list)}")
    for index, (path, rev) in enumerate(compares):
        try:
            _check_compare(path, rev)
        except DoozerError as e:
            raise _at(e, index, path, "compare") from None
    seen: set[str] = set()
    for index, op in enumerate(op_list):
        try:
            _check_op(op, seen, max_value)
        except DoozerError as e:
            raise _at(e, index, op.path, "ops") from None
        seen.add(op.path)
    return compares, op_list


def _check_compare(path: str, rev: int) -> None:
    validate_path(path)
    if type(rev) is not int or not mutation.CLOBBER <= rev <= MAX_REV:
        raise DoozerError("BAD_ARG", f"a compare's rev is an integer from -1 to {MAX_REV}, "
                          f"not {str(rev)[:40]}")


def _check_op(op: Op, seen: set[str], max_value: int) -> None:
    path = validate_path(op.path)
    if op.kind not in (mutation.SET, mutation.DEL):
        raise DoozerError("BAD_ARG", f"an op is a set or a del, not kind {op.kind!r}")
    refusal = client_may_write(path)
    if refusal is not None:
        raise DoozerError("FORBIDDEN", refusal)
    if path.startswith(CAL_PREFIX):
        raise DoozerError("FORBIDDEN", f"{path}: a transaction does not change CAL slots; "
                          "write the slot on its own")
    if path in seen:
        raise DoozerError("BAD_ARG", f"{path} is named by two ops; name each path once")
    if op.kind == mutation.DEL and (op.value or op.lease):
        raise DoozerError("BAD_ARG", "a del has no value and no lease")
    if len(op.value) > max_value:
        raise too_large(max_value)
    if op.lease and not LEASE_ID.match(op.lease):
        raise DoozerError("BAD_ARG", f"{op.lease[:70]!r} is not a lease id")


def _at(error: DoozerError, index: int, path: str, where: str) -> DoozerError:
    """``error`` naming the compare or op at fault, as the store's answers do."""
    shown = path if isinstance(path, str) else repr(path)
    return DoozerError(error.code, error.detail,
                       **{**error.extra, "index": index, "path": shown, "in": where})
