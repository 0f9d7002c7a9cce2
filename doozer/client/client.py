"""The treq client of SPEC §3: every verb, failover, and resumable watches.

::

    from doozer.client import connect

    client = connect("doozer:?ca=127.0.0.1:8046&ca=127.0.0.1:8047")
    rev = await client.set("/message", b"hello", rev=0)
    f = await client.get("/message")             # File(path, rev, value)
    async for event in client.watch("/**"):       # Event(rev, path, op, value)
        ...

Every method returns a :class:`~twisted.internet.defer.Deferred` (await it
inside ``ensureDeferred``/``react``). Errors are the typed exceptions of
:mod:`doozer.client.errors` (re-exported by :mod:`doozer.client`).

Failover: a call goes to the address that last answered and, on a connection
error, a timeout or a ``503`` (``READONLY``/``UNAVAILABLE``), to the next
address of the URI; a ``4xx`` is the answer and is raised at once. A watch
keeps trying all addresses (with a short back-off) for ``reconnect_timeout``
seconds and resumes at its ``next`` rev, so no event is lost or repeated.

The ``http`` object is anything treq-like: ``request(method, url, params=,
data=, headers=)`` returning a Deferred response with ``.code``,
``.headers`` and ``.content()`` — the ``treq`` module, an ``HTTPClient``, or
``treq.testing.StubTreq`` in tests. ``clock`` provides ``callLater`` and
``seconds`` (the reactor, or a ``task.Clock``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from doozer.client.admin import BACKUP_TIMEOUT, AdminCalls
from doozer.client.calls import deferred, url_path
from doozer.client.errors import error_from_response
from doozer.client.types import Dir, Event, File, SelfInfo, Stat, Walk, decode_value
from doozer.client.failover import Failover
from doozer.client.lease_calls import LeaseCalls
from doozer.client.txn import TxnCalls
from doozer.client.uri import DEFAULT_URI, BadURI, parse_uri
from doozer.client.watch import Watch

if TYPE_CHECKING:  # typing only: Client imports it where it makes the pool
    from twisted.web.client import HTTPConnectionPool

__all__ = ["BACKUP_TIMEOUT", "POLL_TIMEOUT", "Client", "connect"]

#: A watch's long-poll length, in seconds (the server allows up to 300).
POLL_TIMEOUT = 30.0


def _rev_params(rev: Optional[int], consistent: bool) -> list[tuple[str, str]]:
    params = []
    if rev is not None:
        params.append(("rev", str(rev)))
    if consistent:
        params.append(("consistent", "1"))
    return params


# ----------------------------------------------------------------------
# the client


def connect(
    uri: Optional[str] = None,
    *,
    http: Any = None,
    clock: Optional[IReactorTime] = None,
    timeout: float = 10.0,
    reconnect_timeout: float = 60.0,
) -> "Client":
    """A :class:`Client` for a doozer URI (nothing is sent until a call).

    :param uri: ``doozer:?ca=H:P&ca=H:P&sk=SECRET`` or ``http(s)://H:P``;
        default ``doozer:?ca=127.0.0.1:8046``.
    :param http: a treq-like object (default: a treq ``HTTPClient`` with its
        own connection pool on the global reactor).
    :param clock: for timeouts and back-off (default: the global reactor).
    :param timeout: seconds one address may take to answer a call before
        the next one is tried.
    :param reconnect_timeout: seconds a watch keeps trying to reach some
        address before it raises :class:`Unreachable`.
    :raises BadURI: for a URI that names no usable address.
    """
    target = parse_uri(uri or DEFAULT_URI)
    return Client(
        target.bases,
        secret=target.secret,
        http=http,
        clock=clock,
        timeout=timeout,
        reconnect_timeout=reconnect_timeout,
    )


class Client(LeaseCalls, TxnCalls, AdminCalls):
    """A client of one doozer cluster, reached through any of ``bases``.

    The lease calls, the transactions, LEAVE and BACKUP are defined with
    their kind (:mod:`doozer.client.calls` names the modules); they are
    this class's methods like the rest.

    :param bases: node base URLs (``http://host:port``), tried in turn.
    :param secret: presented as ``Authorization: Bearer`` when given.
    :param http: a treq-like object; see the module docstring.
    :param clock: ``callLater``/``seconds`` provider for timeouts.
    :param timeout: per-address timeout of a call, in seconds.
    :param reconnect_timeout: how long a watch retries before giving up.
    """

    #: the pool of the default ``http`` (None when one was given)
    _pool: Optional[HTTPConnectionPool]

    def __init__(
        self,
        bases: Sequence[str],
        *,
        secret: Optional[str] = None,
        http: Any = None,
        clock: Optional[IReactorTime] = None,
        timeout: float = 10.0,
        reconnect_timeout: float = 60.0,
    ) -> None:
        if not bases:
            raise BadURI("no node address given")
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self._pool = None
        if http is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool

            self._pool = HTTPConnectionPool(clock, persistent=True)
            http = HTTPClient(Agent(clock, pool=self._pool))
        self._transport = Failover(bases, http, clock, secret=secret, timeout=timeout)
        self.bases = self._transport.bases
        self.secret = secret
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self.clock: IReactorTime = clock

    def close(self) -> "Deferred[None]":
        """Close idle pooled connections (only those of the default ``http``)."""
        if self._pool is not None:
            return self._pool.closeCachedConnections()
        return succeed(None)

    # ------------------------------------------------------------------
    # reads

    @deferred
    async def get(
        self, path: str, rev: Optional[int] = None, *, consistent: bool = False
    ) -> Union[File, Dir]:
        """GET a file (:class:`File`) or a directory (:class:`Dir`).

        :param path: the store path, e.g. ``/a/b``.
        :param rev: read the store as of this rev (waits for a future one).
        :param consistent: first run a consensus round (linearizable read).
        :raises NoEnt: nothing at ``path``. :raises TooLate: ``rev`` too old.
        """
        params = _rev_params(rev, consistent)
        if rev is not None:
            params.append(("timeout", f"{self.timeout:g}"))
        obj = await self._json(
            "GET", "/v1/store/" + url_path(path), params, wait=self.timeout if rev else 0
        )
        if obj.get("dir"):
            return Dir(obj["path"], int(obj["rev"]), list(obj["entries"]))
        return File(obj["path"], int(obj["rev"]), decode_value(obj) or b"")

    @deferred
    async def get_raw(
        self, path: str, rev: Optional[int] = None, *, consistent: bool = False
    ) -> File:
        """GET a file's bytes without JSON (``?raw=1``): any size, any bytes.

        :raises IsDir: ``path`` is a directory. Otherwise as :meth:`get`.
        """
        params = [("raw", "1")] + _rev_params(rev, consistent)
        if rev is not None:
            params.append(("timeout", f"{self.timeout:g}"))
        reply = await self._transport.call(
            "GET", "/v1/store/" + url_path(path), params, wait=self.timeout if rev else 0
        )
        if reply.status != 200:
            raise error_from_response(reply.status, reply.body, reply.base)
        file_rev = reply.headers.getRawHeaders(b"X-Doozer-File-Rev", [b"0"])[0]
        return File(path, int(file_rev), reply.body)

    @deferred
    async def stat(
        self, path: str, rev: Optional[int] = None, *, consistent: bool = False
    ) -> Stat:
        """STAT a path: directory or file, its length, and a file's rev."""
        params = _rev_params(rev, consistent)
        obj = await self._json("GET", "/v1/stat/" + url_path(path), params)
        is_dir = bool(obj.get("dir"))
        rev_out = None if is_dir else int(obj["rev"])
        return Stat(obj.get("path", path), is_dir, int(obj["len"]), rev_out)

    @deferred
    async def getdir(
        self,
        path: str,
        rev: Optional[int] = None,
        *,
        offset: int = 0,
        limit: Optional[int] = None,
        consistent: bool = False,
    ) -> Dir:
        """GETDIR: a directory's sorted entry names (from ``offset``, at most
        ``limit``). :raises NotDir: ``path`` is a file."""
        params = _rev_params(rev, consistent)
        if offset:
            params.append(("offset", str(offset)))
        if limit is not None:
            params.append(("limit", str(limit)))
        obj = await self._json("GET", "/v1/getdir/" + url_path(path), params)
        return Dir(obj.get("path", path), int(obj["rev"]), list(obj["entries"]))

    @deferred
    async def walk(
        self,
        glob: str,
        rev: Optional[int] = None,
        *,
        offset: int = 0,
        limit: Optional[int] = None,
        consistent: bool = False,
    ) -> Walk:
        """WALK: the files matching ``glob`` at one rev, in path order.

        With ``limit=None`` every match is fetched, page by page, all at the
        rev of the first page; otherwise at most ``limit`` from ``offset``.
        """
        files: list[File] = []
        at = rev
        while True:
            params = [("glob", glob)] + _rev_params(at, consistent and at is None)
            params.append(("offset", str(offset + len(files))))
            if limit is not None:
                params.append(("limit", str(limit - len(files))))
            obj = await self._json("GET", "/v1/walk", params)
            at = int(obj["rev"])
            page = [File(f["path"], int(f["rev"]), decode_value(f) or b"") for f in obj["files"]]
            files.extend(page)
            if not page or limit is not None:
                return Walk(at, files)

    @deferred
    async def rev(self) -> int:
        """REV: the node's current applied rev."""
        return int((await self._json("GET", "/v1/rev"))["rev"])

    @deferred
    async def self_info(self) -> SelfInfo:
        """SELF: the answering node's id, address, cluster and status."""
        obj = await self._json("GET", "/v1/self")
        return SelfInfo(
            str(obj["id"]),
            str(obj.get("addr", "")),
            str(obj.get("cluster", "")),
            bool(obj.get("member", False)),
            bool(obj.get("writable", False)),
            bool(obj.get("voting", False)),
        )

    #: SELF under its SPEC name: ``await client.self()``.
    self = self_info

    @deferred
    async def cluster(self) -> dict[str, Any]:
        """CLUSTER: the cluster's name, rev, members and known nodes (the JSON)."""
        return await self._json("GET", "/v1/cluster")

    # ------------------------------------------------------------------
    # writes

    @deferred
    async def set(
        self, path: str, value: Union[bytes, str], rev: int = -1, lease: Optional[str] = None
    ) -> int:
        """SET a file's bytes; returns the new file rev.

        :param value: bytes (a ``str`` is encoded as UTF-8).
        :param rev: ``-1`` always, ``0`` only if missing, ``R`` only if the
            file's rev is ``<= R``.
        :param lease: attach the file to this lease (SPEC §9).
        :raises RevMismatch: precondition failed (``err.rev`` is current).
        :raises NoEnt: the lease does not exist (``err.extra["lease"]``).
        :raises Unavailable: not committed in time; may still commit.
        """
        if isinstance(value, str):
            value = value.encode("utf-8")
        params = [("rev", str(rev))] + ([("lease", lease)] if lease else [])
        obj = await self._json("PUT", "/v1/store/" + url_path(path), params, value, write=True)
        return int(obj["rev"])

    @deferred
    async def delete(self, path: str, rev: int = -1) -> int:
        """DEL a file (same ``rev`` preconditions as :meth:`set`); returns
        the rev of the delete."""
        obj = await self._json(
            "DELETE", "/v1/store/" + url_path(path), [("rev", str(rev))], write=True
        )
        return int(obj["rev"])

    @deferred
    async def nop(self) -> int:
        """NOP: one consensus round; returns its rev."""
        return int((await self._json("POST", "/v1/nop", write=True))["rev"])

    # ------------------------------------------------------------------
    # watches

    def watch(
        self,
        glob: str,
        rev: Optional[int] = None,
        *,
        limit: Optional[int] = None,
        poll_timeout: float = POLL_TIMEOUT,
    ) -> "Watch":
        """An async iterator of every change matching ``glob`` from ``rev``.

        :param rev: the first rev to report (default: changes from now on).
        :param limit: most events fetched per long-poll (server default 1000).
        :param poll_timeout: seconds one long-poll is held open.
        """
        return Watch(self, glob, rev, limit, poll_timeout)

    @deferred
    async def wait(
        self, glob: str, rev: Optional[int] = None, timeout: Optional[float] = None
    ) -> Event:
        """WAIT: the first change matching ``glob`` with rev ``>= rev``.

        :param timeout: seconds to wait (default: forever).
        :raises Timeout: nothing changed within ``timeout``.
        """
        deadline = None if timeout is None else self.clock.seconds() + timeout
        watch = Watch(self, glob, rev, 1, POLL_TIMEOUT, deadline=deadline)
        return await watch.next()

    @deferred
    async def poll_once(
        self, glob: str, rev: Optional[int], limit: Optional[int], hold: float
    ) -> tuple[list[Event], int]:
        """One WATCH long-poll: ``(events, next)``; :class:`Watch` loops on it.

        :param rev: the first rev wanted (None: changes from now on).
        :param limit: most events returned (None: the server's default).
        :param hold: seconds the node may hold the request open.
        """
        params = [("glob", glob), ("timeout", f"{hold:g}")]
        if rev is not None:
            params.append(("rev", str(rev)))
        if limit is not None:
            params.append(("limit", str(limit)))
        obj = await self._json("GET", "/v1/watch", params, wait=hold)
        events = [
            Event(int(e["rev"]), e["path"], e["op"], decode_value(e)) for e in obj["events"]
        ]
        return events, int(obj["next"])
