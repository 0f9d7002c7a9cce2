"""What every group of a :class:`~doozer.client.client.Client`'s calls
shares: the failover transport, and one call's JSON answer or typed error.

The client is made of such groups, one module each: the lease calls
(:mod:`doozer.client.lease_calls`), the transactions
(:mod:`doozer.client.txn`), an operator's calls on one node
(:mod:`doozer.client.admin`), and the store's reads, writes and watches in
:mod:`doozer.client.client` itself. Each is a mixin of :class:`Calls`, so
that its methods are the client's own and the public API is one class.
"""

from __future__ import annotations

import json
from functools import wraps
from typing import Any, Callable, Coroutine, Optional, TypeVar
from urllib.parse import quote

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime

from doozer.client.errors import BadPath, Other, error_from_response
from doozer.client.failover import Failover

T = TypeVar("T")


def deferred(f: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., "Deferred[T]"]:
    """Make an ``async def`` method return a Deferred, as the API promises."""

    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> "Deferred[T]":
        return ensureDeferred(f(*args, **kwargs))

    return wrapper


def url_path(path: str) -> str:
    """The URL form of a store path (``/a/b`` -> ``a/b``), checked lightly."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadPath(f"{path!r} is not a path: paths start with /")
    return quote(path[1:], safe="/")


class Calls:
    """The state every group of calls uses (set by :class:`Client
    <doozer.client.client.Client>`'s ``__init__``)."""

    _transport: Failover
    secret: Optional[str]
    timeout: float
    clock: IReactorTime

    @property
    def current(self) -> str:
        """The base URL the next call goes to first (the last that answered)."""
        return self._transport.current

    async def _json(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """:meth:`Failover.call`, then the JSON object of a 200 or the typed error."""
        reply = await self._transport.call(*args, **kwargs)
        if reply.status != 200:
            raise error_from_response(reply.status, reply.body, reply.base)
        try:
            obj = json.loads(reply.body)
        except ValueError:
            raise Other(f"{reply.base} answered with something that is not JSON") from None
        if not isinstance(obj, dict):
            raise Other(f"{reply.base} answered with a JSON {type(obj).__name__}")
        return obj
