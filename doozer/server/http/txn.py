"""The body of ``POST /v1/txn`` (SPEC §10), read and checked before anything
is proposed.

::

    {"compare": [{"path": "/leader", "rev": 0}],
     "ops": [{"op": "set", "path": "/leader", "value": "n1"},
             {"op": "set", "path": "/blob", "value": "AAE=", "encoding": "base64"},
             {"op": "del", "path": "/cfg/old"}]}

Both lists are optional (an empty transaction only takes a rev). Anything
that is not exactly this shape is ``BAD_ARG``: not UTF-8 JSON, a key
named twice or unknown, a wrong type, an op other than ``set``/``del``, a
``set`` without ``value``, bad base64. The body may be ``--max-value``
plus :data:`BODY_SLACK` bytes (else ``TOO_LARGE``, found while it is
read). The node then checks what it checks of every transaction
(:func:`doozer.node.txn.check`: counts, paths, a path named twice, what
clients may write, each value's size).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any, Optional

from twisted.web.iweb import IRequest

from doozer.errors import DoozerError
from doozer.node.txn import Compare
from doozer.store import mutation
from doozer.store.mutation import Op

if TYPE_CHECKING:
    from doozer.node import Node

#: Bytes a transaction's body may have beyond ``--max-value`` (SPEC §10):
#: room for the JSON, the paths and the compares around the values.
BODY_SLACK = 4096

_OPS = {"set": mutation.SET, "del": mutation.DEL}
_SET_KEYS = {"op", "path", "value", "encoding", "lease"}
_DEL_KEYS = {"op", "path"}


def read_txn(request: IRequest, node: "Node") -> tuple[list[Compare], list[Op]]:
    """The compares and ops of a ``POST /v1/txn`` request.

    :raises DoozerError: ``TOO_LARGE`` for a body over ``--max-value`` plus
        :data:`BODY_SLACK`, ``BAD_ARG`` for one that is not a transaction.
    """
    limit = node.max_value + BODY_SLACK
    content = request.content
    if getattr(request, "doozer_too_large", False) or content is None:
        raise _too_large(limit)
    content.seek(0, 2)
    if content.tell() > limit:
        raise _too_large(limit)
    content.seek(0)
    return parse(content.read())


def parse(body: bytes) -> tuple[list[Compare], list[Op]]:
    """A transaction's compares and ops from its JSON body.

    :raises DoozerError: ``BAD_ARG`` saying what is wrong, with ``index``
        and ``in`` when one compare or op is.
    """
    try:
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=_no_twice)
    except (UnicodeDecodeError, RecursionError, ValueError) as e:
        # ValueError: bad JSON, a key twice, an integer of too many digits
        raise _bad(f"the body is not a JSON transaction: {_short(e)}") from None
    if not isinstance(doc, dict):
        raise _bad('the body is a JSON object {"compare": [...], "ops": [...]}')
    unknown = set(doc) - {"compare", "ops"}
    if unknown:
        raise _bad(f"unknown key {sorted(unknown)[0][:40]!r}; a transaction has compare and ops")
    compares = doc.get("compare", [])
    ops = doc.get("ops", [])
    if not isinstance(compares, list) or not isinstance(ops, list):
        raise _bad("compare and ops are JSON arrays")
    # The counts are the node's to check too; refusing here spares reading
    # thousands of entries first.
    if len(compares) > mutation.MAX_COMPARE or len(ops) > mutation.MAX_OPS:
        raise _bad(f"a transaction has at most {mutation.MAX_COMPARE} compares and "
                   f"{mutation.MAX_OPS} ops, not {len(compares)} and {len(ops)}")
    return ([_compare(i, c) for i, c in enumerate(compares)],
            [_op(i, o) for i, o in enumerate(ops)])


def _compare(index: int, doc: Any) -> Compare:
    if not isinstance(doc, dict) or set(doc) != {"path", "rev"}:
        raise _bad('a compare is {"path": P, "rev": R}', index, "compare")
    path, rev = doc["path"], doc["rev"]
    if not isinstance(path, str):
        raise _bad("a compare's path is a string", index, "compare")
    if type(rev) is not int:
        raise _bad("a compare's rev is an integer (-1, 0 or a rev)", index, "compare")
    return path, rev


def _op(index: int, doc: Any) -> Op:
    if not isinstance(doc, dict) or doc.get("op") not in _OPS:
        raise _bad('an op is {"op": "set" or "del", "path": P, ...}', index, "ops")
    kind = _OPS[doc["op"]]
    allowed = _SET_KEYS if kind == mutation.SET else _DEL_KEYS
    unknown = set(doc) - allowed
    if unknown:
        raise _bad(f"unknown key {sorted(unknown)[0][:40]!r} in a {doc['op']} "
                   f"(it has {', '.join(sorted(allowed))})", index, "ops")
    path = doc.get("path")
    if not isinstance(path, str):
        raise _bad("an op's path is a string", index, "ops")
    if kind == mutation.DEL:
        return Op(kind, path)
    lease = doc.get("lease", "")
    if not isinstance(lease, str):
        raise _bad("a lease is a string (the lease's id)", index, "ops")
    return Op(kind, path, _value(index, doc), lease)


def _value(index: int, doc: dict[str, Any]) -> bytes:
    if "value" not in doc:
        raise _bad("a set needs a value", index, "ops")
    value, encoding = doc["value"], doc.get("encoding")
    if not isinstance(value, str):
        raise _bad("a value is a string (text, or base64 with \"encoding\": \"base64\")",
                   index, "ops")
    if "encoding" not in doc:
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad("the value is not valid text (a lone surrogate)", index, "ops") from None
    if encoding != "base64":
        raise _bad('the only encoding is "base64"', index, "ops")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _bad("the value is not standard base64", index, "ops") from None


def _no_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a key is given twice in one object")
    return out


def _bad(detail: str, index: Optional[int] = None, where: str = "") -> DoozerError:
    if index is None:
        return DoozerError("BAD_ARG", detail)
    return DoozerError("BAD_ARG", detail, index=index, **{"in": where})


def _too_large(limit: int) -> DoozerError:
    return DoozerError(
        "TOO_LARGE",
        f"the transaction's body is larger than {limit} bytes (--max-value plus "
        f"{BODY_SLACK}); doozer is for small values",
    )


def _short(e: BaseException) -> str:
    return str(e)[:120] or type(e).__name__
