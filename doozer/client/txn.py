"""A transaction as the client sends it (SPEC §10): its body, and the TXN
calls of :class:`~doozer.client.client.Client` (:class:`TxnCalls`, a mixin).

The client names ops as tuples, the shortest spelling that reads well::

    ("set", "/leader", b"n1")           # value: bytes, or str (UTF-8)
    ("set", "/leader", b"n1", "L7")     # attached to lease L7
    ("del", "/cfg/old")

and compares as ``(path, rev)`` pairs with the rev preconditions of SPEC §1
(``-1`` any, ``0`` missing, ``R`` at most ``R``). A value that is valid
UTF-8 travels as text, any other as base64 (``"encoding": "base64"``).
Only the shape is checked here; the node checks the rest and answers
``BAD_ARG``/``BAD_PATH``/... with the ``index`` of the entry at fault.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Iterable, Sequence, Union

from doozer.client.calls import Calls, deferred
from doozer.client.errors import BadArg

#: One op: ``("set", path, value)``, ``("set", path, value, lease)`` or ``("del", path)``.
TxnOp = Sequence[Any]
Value = Union[bytes, str]


class TxnCalls(Calls):
    """The transactions of a :class:`~doozer.client.client.Client`."""

    @deferred
    async def txn(
        self, compare: Iterable[tuple[str, int]] = (), ops: Iterable[TxnOp] = ()
    ) -> int:
        """TXN (SPEC §10): every op at one rev if every compare holds and
        every op can be applied, else nothing; returns the rev.

        ::

            rev = await client.txn(compare=[("/leader", 0)],
                                   ops=[("set", "/leader", b"n1"), ("del", "/cfg/old")])

        :param compare: ``(path, rev)`` preconditions (``-1``, ``0``, ``R``).
        :param ops: ``("set", path, value)``, ``("set", path, value, lease)``
            or ``("del", path)``, at most 128, each path once.
        :raises RevMismatch: a compare failed (``err.index``, ``err.rev``).
        :raises ClientError: the failing op's error (``NoEnt``, ``IsDir``,
            ``NotDir``...) or a refused body (``BadArg``, ``BadPath``,
            ``TooLarge``...); ``err.index`` names the entry, counted in the
            list ``err.extra["in"]`` names (``"compare"`` or ``"ops"``).
        """
        return await self.txn_json(txn_body(compare, ops))

    @deferred
    async def txn_json(self, body: bytes) -> int:
        """TXN with a body already in SPEC §10's JSON (what ``doozer txn
        FILE`` sends), passed as it is: the node checks it. Returns the rev;
        raises as :meth:`txn`."""
        return int((await self._json("POST", "/v1/txn", (), body, write=True))["rev"])


def txn_body(compare: Iterable[tuple[str, int]], ops: Iterable[TxnOp]) -> bytes:
    """The JSON body of ``POST /v1/txn``.

    :raises BadArg: an op or compare that is not one of the forms above
        (``index`` and ``in`` name it, as the node's errors do).
    """
    doc = {
        "compare": [_compare(i, c) for i, c in enumerate(compare)],
        "ops": [_op(i, o) for i, o in enumerate(ops)],
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _compare(index: int, entry: Any) -> dict[str, Any]:
    try:
        path, rev = entry
    except (TypeError, ValueError):
        path = rev = None
    if not isinstance(path, str) or type(rev) is not int:
        raise BadArg(f"a compare is a (path, rev) pair, not {entry!r:.80}", index=index,
                     **{"in": "compare"})
    return {"path": path, "rev": rev}


def _op(index: int, entry: Any) -> dict[str, Any]:
    kind = entry[0] if isinstance(entry, (tuple, list)) and entry else None
    if kind == "del" and len(entry) == 2 and isinstance(entry[1], str):
        return {"op": "del", "path": entry[1]}
    if (kind == "set" and len(entry) in (3, 4) and isinstance(entry[1], str)
            and isinstance(entry[2], (bytes, str))
            and (len(entry) == 3 or isinstance(entry[3], str))):
        out: dict[str, Any] = {"op": "set", "path": entry[1]}
        out.update(_value(entry[2]))
        if len(entry) == 4:
            out["lease"] = entry[3]
        return out
    raise BadArg(f'an op is ("set", path, value[, lease]) or ("del", path), not {entry!r:.80}',
                 index=index, **{"in": "ops"})


def _value(value: Value) -> dict[str, str]:
    if isinstance(value, str):
        return {"value": value}
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}
