"""The HTTP/JSON API of SPEC §3, served with Klein.

One route function per endpoint: parse and check the arguments, call the
node, render. Rendering, errors, authentication and the ``X-Doozer-Rev``
header are handled in one place each (:mod:`doozer.server.http.site`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from doozer.errors import DoozerError
from doozer.server.http.backup import Backups
from doozer.server.http.gate import Gate
from doozer.server.auth import Secrets
from doozer.server.http.args import arg_bool, arg_int, arg_number, arg_str, read_body, store_path
from doozer.server.http.render import encode_json, endpoint, json_response, render_value
from doozer.server.http.lease import read_ttl
from doozer.server.http import metrics as metrics_route
from doozer.server.http.txn import read_txn
from doozer.node import Node
from doozer.node import health
from doozer.node.metrics import NodeMetrics
from doozer.server.auth import TokenCheck
from doozer.store import Dir, Event, File

READ_TIMEOUT = 10.0
WATCH_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
WALK_LIMIT = 1000
WATCH_LIMIT = 1000

READ = ("GET", "HEAD")


class API:
    """The Klein app of SPEC §3 for one node.

    :param node: the node whose operations the API serves.
    :param secrets: the rw/ro access secrets (none: open).
    :param readonly: serve the read endpoints only (the WebView's address).
    :param cluster_key: the key that seals this node's answers to peers.
    :param cluster_keys: every key a peer's token may be made with.
    :param insecure_peers: without a key, serve peers' endpoints to anyone
        (``--insecure-peers``).
    :param metrics: the node's metrics (the service's, which also reads
        its transport and limits); made from the node at the first scrape
        when not given.
    """

    app = Klein()
    # werkzeug would answer ``/v1//rev`` or ``/v1/lease//keepalive`` with a
    # bodiless 308 to the merged path; every answer here is a SPEC §3 body
    # (such a URL gets 404 NOT_FOUND). Set before the routes below bind.
    app.url_map.merge_slashes = False
    log = Logger()

    def __init__(
        self,
        node: Node,
        *,
        secrets: Optional[Secrets] = None,
        readonly: bool = False,
        cluster_key: Optional[bytes] = None,
        cluster_keys: tuple[bytes, ...] = (),
        insecure_peers: bool = False,
        metrics: Optional[NodeMetrics] = None,
    ) -> None:
        self.node = node
        self.metrics = metrics
        self.cluster_key = cluster_key
        keys = cluster_keys or ((cluster_key,) if cluster_key else ())
        self.peer_tokens = TokenCheck(keys, node.clock.seconds) if keys else None
        self.insecure_peers = insecure_peers
        self.secrets = secrets or Secrets()
        self.readonly = readonly
        self.backups = Backups(node.clock)
        #: The last watch answer rendered: (events, next, body); see _watch_body.
        self._last_watch: Optional[tuple[list[Event], int, bytes]] = None

    def resource(self) -> IResource:
        """The resource to serve: authentication and errors in front of the routes."""
        return Gate(self.app.resource(), self)

    def direct(self, request: IRequest) -> Optional[Callable[[IRequest], Any]]:
        """The route for ``request`` when Klein would certainly pick it, else None.

        Only plain URLs qualify (no ``%``-escapes, no empty or trailing
        segment, ASCII host): for those, werkzeug neither redirects nor
        routes elsewhere. Everything else goes through Klein as before.
        """
        path = request.path
        if path.startswith(b"/v1/store/"):
            if len(path) > 10 and (b"//" in path or b"%" in path or path.endswith(b"/")):
                return None
            route = self.store
        elif path == b"/v1/watch":
            route = self.watch
        else:
            return None
        host = request.getHeader(b"host")
        if host is not None and not host.isascii():
            return None
        return route

    # ------------------------------------------------------------------
    # helpers used by every route

    def _method(self, request: IRequest, *allowed: str) -> str:
        method = request.method.decode("ascii", "replace")
        if self.readonly and method not in READ:
            raise DoozerError(
                "METHOD_NOT_ALLOWED",
                "this address serves reads only (the WebView); write to the node's "
                "API address",
            )
        if method not in allowed:
            raise DoozerError(
                "METHOD_NOT_ALLOWED",
                f"{method} is not allowed here; use {' or '.join(allowed)}",
            )
        if method not in READ:
            self.secrets.check_write(request)
        return method

    def _read_rev(self, request: Request) -> "Deferred[int]":
        """The rev to read at, from ``rev``, ``timeout`` and ``consistent``."""
        rev = arg_int(request, "rev", minimum=1)
        timeout = arg_number(request, "timeout", READ_TIMEOUT, MAX_TIMEOUT)
        consistent = arg_bool(request, "consistent")
        return self.node.read_rev(rev, timeout, consistent, client=request.channel)

    # ------------------------------------------------------------------
    # routes

    @app.handle_errors(NotFound)
    def _not_found(self, request: IRequest, failure: Any) -> bytes:
        return json_response(
            request,
            self.node,
            DoozerError(
                "NOT_FOUND",
                f"no endpoint {request.path.decode('utf-8', 'replace')}; "
                "see docs/api.md for the endpoints",
            ),
        )

    @app.handle_errors(MethodNotAllowed)
    def _not_allowed(self, request: IRequest, failure: Any) -> bytes:
        return json_response(
            request, self.node, DoozerError("METHOD_NOT_ALLOWED", "wrong method")
        )

    @app.route("/v1/store/", branch=True)
    @endpoint
    async def store(self, request: Request) -> Any:
        method = self._method(request, "GET", "HEAD", "PUT", "DELETE")
        path = store_path(request, b"/v1/store")
        if method == "PUT":
            rev = arg_int(request, "rev", minimum=-1, default=-1)
            lease = arg_str(request, "lease")
            body = read_body(request, self.node)
            # One connection is one client: its share of the node's pending
            # writes is bounded (doozer/node/admission.py).
            new_rev = await self.node.set(path, body, rev, client=request.channel, lease=lease)
            return {"path": path, "rev": new_rev}
        if method == "DELETE":
            rev = arg_int(request, "rev", minimum=-1, default=-1)
            del_rev = await self.node.delete(path, rev, client=request.channel)
            return {"path": path, "rev": del_rev}
        raw = arg_bool(request, "raw") or _wants_octets(request)
        at = await self._read_rev(request)
        entry = self.node.store.get(path, at)
        if isinstance(entry, Dir):
            if raw:
                raise DoozerError("ISDIR", f"{path} is a directory; raw reads need a file")
            return {"path": path, "dir": True, "entries": entry.entries, "rev": at}
        if raw:
            request.setHeader(b"Content-Type", b"application/octet-stream")
            request.setHeader(b"X-Doozer-File-Rev", str(entry.rev).encode())
            return entry.value
        out = {"path": path, "rev": entry.rev, "len": len(entry.value)}
        out.update(render_value(entry.value))
        return out

    @app.route("/v1/stat/", branch=True)
    @endpoint
    async def stat(self, request: Request) -> Any:
        self._method(request, *READ)
        path = store_path(request, b"/v1/stat")
        entry = self.node.store.get(path, await self._read_rev(request))
        if isinstance(entry, Dir):
            return {"path": path, "dir": True, "len": len(entry.entries)}
        return {"path": path, "dir": False, "rev": entry.rev, "len": len(entry.value)}

    @app.route("/v1/getdir/", branch=True)
    @endpoint
    async def getdir(self, request: Request) -> Any:
        self._method(request, *READ)
        path = store_path(request, b"/v1/getdir")
        offset = arg_int(request, "offset", minimum=0, default=0)
        limit = arg_int(request, "limit", minimum=1)
        at = await self._read_rev(request)
        entries = self.node.store.getdir(path, at)
        end = None if limit is None else offset + limit
        return {"path": path, "rev": at, "entries": entries[offset:end]}

    @app.route("/v1/walk")
    @endpoint
    async def walk(self, request: Request) -> Any:
        self._method(request, *READ)
        glob = arg_str(request, "glob", required=True)
        offset = arg_int(request, "offset", minimum=0, default=0)
        limit = arg_int(request, "limit", minimum=1, default=WALK_LIMIT)
        at = await self._read_rev(request)
        files = self.node.store.walk(glob, at)[offset : offset + limit]
        return {"rev": at, "files": [_file_json(f) for f in files]}

    @app.route("/v1/watch")
    @endpoint
    def watch(self, request: IRequest) -> "Deferred[bytes]":
        # Callbacks, not a coroutine: every held watch would keep its frames.
        self._method(request, *READ)
        glob = arg_str(request, "glob", required=True)
        rev = arg_int(request, "rev", minimum=1)
        limit = arg_int(request, "limit", minimum=1, default=WATCH_LIMIT)
        timeout = arg_number(request, "timeout", WATCH_TIMEOUT, MAX_TIMEOUT)
        return self.node.watch(glob, rev, limit, timeout).addCallback(self._watch_body, request)

    def _watch_body(self, result: tuple[list[Event], int], request: IRequest) -> bytes:
        """A watch's answer, rendered once for every watch woken with the same
        events: the store hands them one list (10,000 watchers of a key
        are answered by one write)."""
        events, next_rev = result
        last = self._last_watch
        if last is not None and last[0] is events and last[1] == next_rev:
            body = last[2]
        else:
            body = encode_json(_watch_json(result)).encode()
            # Holding the list keeps its id from being reused; one batch's worth.
            self._last_watch = (events, next_rev, body)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        return body

    @app.route("/v1/rev")
    @endpoint
    def rev(self, request: IRequest) -> Any:
        self._method(request, *READ)
        return {"rev": self.node.store.rev}

    @app.route("/v1/self")
    @endpoint
    def self_(self, request: IRequest) -> Any:
        self._method(request, *READ)
        return self.node.info.self_info()

    @app.route("/v1/self/slot")
    @endpoint
    async def leave(self, request: Request) -> Any:
        # SPEC §11's ``doozer leave``: a write (the read-write secret).
        self._method(request, "DELETE")
        return await self.node.leaving.leave()

    @app.route("/v1/nop")
    @endpoint
    async def nop(self, request: Request) -> Any:
        self._method(request, "POST")
        return {"rev": await self.node.nop(client=request.channel)}

    @app.route("/v1/txn")
    @endpoint
    async def txn(self, request: Request) -> Any:
        # SPEC §10: the whole body is checked before anything is proposed.
        self._method(request, "POST")
        compare, ops = read_txn(request, self.node)
        return {"rev": await self.node.txn(compare, ops, client=request.channel)}

    @app.route("/v1/lease")
    @endpoint
    async def grant(self, request: Request) -> Any:
        self._method(request, "POST")
        ttl = read_ttl(request)
        lease_id, rev = await self.node.grant(ttl, client=request.channel)
        return {"id": lease_id, "ttl": ttl, "rev": rev}

    @app.route("/v1/lease/<lease_id>/keepalive")
    @endpoint
    async def keepalive(self, request: Request, lease_id: str) -> Any:
        self._method(request, "POST")
        return {"id": lease_id, "ttl": await self.node.keepalive(lease_id)}

    @app.route("/v1/lease/<lease_id>")
    @endpoint
    async def lease(self, request: Request, lease_id: str) -> Any:
        method = self._method(request, "GET", "HEAD", "DELETE")
        if method == "DELETE":
            rev = await self.node.revoke(lease_id, client=request.channel)
            return {"id": lease_id, "rev": rev}
        return self.node.lease(lease_id)

    @app.route("/v1/leases")
    @endpoint
    def leases(self, request: IRequest) -> Any:
        self._method(request, *READ)
        return {"leases": self.node.leases()}

    @app.route("/v1/backup")
    @endpoint
    def backup(self, request: IRequest) -> Any:
        # Every file, /ctl included: the read-write secret (SPEC §8), and
        # its 403 before the method's 405 (SPEC §3's order).
        self.secrets.check_write(request)
        if self.readonly:
            raise DoozerError(
                "NOT_FOUND", "backups are served on the node's API address, not the WebView's"
            )
        self._method(request, "GET")
        return self.backups.start(self.node)

    @app.route("/v1/cluster")
    @endpoint
    def cluster(self, request: IRequest) -> Any:
        self._method(request, *READ)
        return self.node.info.cluster_info()

    # SPEC §11's probes: no secret (the gate lets them through), and on the
    # client port only (the WebView's paths are store paths).

    @app.route("/livez")
    @endpoint
    def livez(self, request: IRequest) -> Any:
        self._method(request, *READ)
        verdict = health.liveness(self.node, self.node.clock.seconds())
        if not verdict.ok:
            raise verdict.error("NOT_LIVE", "live")
        return {"live": True}

    @app.route("/readyz")
    @endpoint
    def readyz(self, request: IRequest) -> Any:
        self._method(request, *READ)
        verdict = health.readiness(self.node, self.node.clock.seconds())
        if not verdict.ok:
            raise verdict.error("NOT_READY", "ready")
        return {"ready": True}

    @app.route("/metrics")
    @endpoint
    def metrics_(self, request: IRequest) -> Any:
        # SPEC §11: the read secret when secrets are set (the gate checks
        # it), and on the client port only, like the probes.
        self._method(request, *READ)
        if self.readonly:
            raise DoozerError("NOT_FOUND", "metrics are served on the node's API address")
        if self.metrics is None:
            self.metrics = NodeMetrics(self.node)
        return metrics_route.render(self.metrics, request)


def _wants_octets(request: IRequest) -> bool:
    accept = request.getHeader(b"accept") or b""
    return b"application/octet-stream" in accept


def _watch_json(result: tuple[list[Event], int]) -> dict[str, Any]:
    events, next_rev = result
    out = []
    for e in events:
        event: dict[str, Any] = {"rev": e.rev, "path": e.path, "op": e.op}
        if e.value is None:
            event["value"] = None
        else:
            event.update(render_value(e.value))
        out.append(event)
    return {"events": out, "next": next_rev}


def _file_json(f: File) -> dict[str, Any]:
    out: dict[str, Any] = {"path": f.path, "rev": f.rev}
    out.update(render_value(f.value))
    return out
