"""HTTP plumbing shared by the API routes: arguments, bodies, secrets,
JSON rendering and the resource that guards every request.

Kept apart from :mod:`doozer.api` so that the routes stay a few lines each.
"""

from __future__ import annotations

import base64
import functools
import hmac
import inspect
import json
import math
import re
from io import BytesIO
from typing import Any, Callable, Coroutine, Optional, Union
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.logger import Logger
from twisted.web import server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from doozer import peer
from doozer.channel import Channel
from doozer.errors import DoozerError
from doozer.path import validate_glob, validate_path

log = Logger()

_INT = re.compile(rb"-?[0-9]{1,18}")
_NUMBER = re.compile(rb"[0-9]{1,9}(\.[0-9]{1,9})?")
_TRUE = (b"1", b"true")
_FALSE = (b"0", b"false", b"")


# ----------------------------------------------------------------------
# query arguments


def _one(request: IRequest, name: str) -> Optional[bytes]:
    args = request.args
    if not args:  # the common case: no query string at all
        return None
    values = args.get(name.encode())
    if not values:
        return None
    if len(values) > 1:
        raise DoozerError("BAD_ARG", f"{name} is given {len(values)} times; give it once")
    return values[0]


def arg_int(
    request: IRequest, name: str, minimum: int, default: Optional[int] = None
) -> Optional[int]:
    """An integer argument ``>= minimum``, or ``default`` when absent."""
    raw = _one(request, name)
    if raw is None:
        return default
    if not _INT.fullmatch(raw) or int(raw) < minimum:
        shown = raw[:40].decode("utf-8", "replace")
        raise DoozerError(
            "BAD_ARG", f"{name} must be an integer >= {minimum}, not {shown!r}"
        )
    return int(raw)


def arg_number(request: IRequest, name: str, default: float, maximum: float) -> float:
    """A number of seconds in ``(0, maximum]``, or ``default`` when absent."""
    raw = _one(request, name)
    if raw is None:
        return default
    value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
    if not 0 < value <= maximum:
        shown = raw[:40].decode("utf-8", "replace")
        raise DoozerError(
            "BAD_ARG", f"{name} must be a number of seconds in (0, {maximum:g}], not {shown!r}"
        )
    return value


def arg_bool(request: IRequest, name: str) -> bool:
    """A flag: ``1``/``true`` or ``0``/``false``; absent is false."""
    raw = _one(request, name)
    if raw is None:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise DoozerError("BAD_ARG", f"{name} must be 1 or 0")


def arg_str(request: IRequest, name: str, required: bool = False) -> str:
    """A text argument; a ``glob`` is also checked for SPEC §2 syntax."""
    raw = _one(request, name)
    if raw is None:
        if required:
            raise DoozerError("MISSING_ARG", f"{name} is required")
        return ""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DoozerError("BAD_ARG", f"{name} is not valid UTF-8") from None
    if name == "glob":
        validate_glob(text)
    return text


def store_path(request: IRequest, prefix: bytes) -> str:
    """The store path named by the URL after ``prefix`` (``/v1/store/a/b`` is ``/a/b``)."""
    rest = request.path[len(prefix) :]
    if rest in (b"", b"/"):
        return "/"
    try:
        path = unquote_to_bytes(rest).decode("utf-8")
    except UnicodeDecodeError:
        raise DoozerError("BAD_PATH", "the path is not valid UTF-8") from None
    return validate_path(path)


# ----------------------------------------------------------------------
# bodies


def read_body(request: IRequest, max_value: int) -> bytes:
    """The request body, or ``TOO_LARGE`` when it exceeds ``max_value``."""
    if getattr(request, "doozer_too_large", False):
        raise _too_large(max_value)
    content = request.content
    content.seek(0, 2)
    if content.tell() > max_value:
        raise _too_large(max_value)
    content.seek(0)
    return content.read()


def _too_large(max_value: int) -> DoozerError:
    return DoozerError(
        "TOO_LARGE",
        f"the body is larger than {max_value} bytes (--max-value); doozer is for "
        "small values",
    )


class CappedRequest(server.Request):
    """A request that stops buffering its body past the site's cap.

    Twisted buffers a body before the handler runs; this request keeps at
    most ``site.max_body`` bytes of it and flags the rest, so a huge or
    endless body never fills memory. Far past the cap the connection is
    answered 413 and closed.
    """

    doozer_too_large = False
    _discarded = 0

    def _cap(self) -> int:
        return getattr(self.channel.site, "max_body", 1 << 20)

    def gotLength(self, length: Optional[int]) -> None:
        if length is not None and length > self._cap():
            self.doozer_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        cap = self._cap()
        if not self.doozer_too_large and self.content.tell() + len(data) > cap:
            self.doozer_too_large = True
            self.content = BytesIO()
        if not self.doozer_too_large:
            self.content.write(data)
            return
        self._discarded += len(data)
        if self._discarded > 16 * cap + (1 << 20):
            self._abort_too_large(cap)

    def _abort_too_large(self, cap: int) -> None:
        transport = self.channel.transport
        if transport is None or getattr(self, "_aborted", False):
            return
        self._aborted = True
        body = json.dumps(_too_large(cap).body()).encode()
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json; "
            b"charset=utf-8\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        transport.loseConnection()

    def process(self) -> None:
        # Host and Origin first: a request for another name, or from a page
        # of another origin, learns nothing, not even that a secret is needed.
        hosts = getattr(self.channel.site, "hosts", None)
        if hosts is None or not hosts.refused(self):
            super().process()


class Site(server.Site):
    """A Site with the body cap and an access log that is off unless asked for.

    :param resource: the root resource.
    :param max_body: largest request body buffered, in bytes.
    :param access_log: log one line per request.
    :param limits: the node's client limits (:class:`doozer.limits.Limits`):
        its connections' deadlines and output bound.
    :param hosts: the Host and Origin rules of this port
        (:class:`doozer.hosts.HostPolicy`); None answers every Host.
    :param node: the node, for ``X-Doozer-Rev`` on the answers the Site
        gives itself (421, 403).
    """

    protocol = Channel

    def __init__(
        self,
        resource: IResource,
        max_body: int,
        access_log: bool = False,
        *,
        limits: Any = None,
        hosts: Any = None,
        node: Any = None,
    ) -> None:
        super().__init__(resource, requestFactory=CappedRequest)
        self.max_body = max_body
        self.access_log = access_log
        self.limits = limits
        self.hosts = hosts
        self.node = node

    def log(self, request: Any) -> None:
        # Writing one access-log line per request costs about a quarter of
        # the read throughput, so it is opt-in (--access-log).
        if self.access_log:
            super().log(request)


# ----------------------------------------------------------------------
# access secrets


class Secrets:
    """doozerd's read-write and read-only secrets (SPEC §3).

    :param rw: the read-write secret, or ``None`` for an open node.
    :param ro: the read-only secret (only together with ``rw``).
    """

    def __init__(self, rw: Optional[bytes] = None, ro: Optional[bytes] = None) -> None:
        if ro is not None and rw is None:
            raise ValueError(
                "a read-only secret needs a read-write secret too "
                "(set DOOZER_RWSECRET or --rw-secret-file)"
            )
        self.rw = rw
        self.ro = ro

    def grant(self, token: Optional[bytes]) -> Optional[str]:
        """``"rw"``, ``"ro"`` or ``None`` for a presented secret (constant time)."""
        if self.rw is None:
            return "rw"
        if token is None:
            return None
        rw_ok = hmac.compare_digest(token, self.rw)
        ro_ok = self.ro is not None and hmac.compare_digest(token, self.ro)
        return "rw" if rw_ok else "ro" if ro_ok else None

    def check_read(self, request: IRequest) -> None:
        """Refuse a request without a valid secret (401)."""
        if self.rw is None:
            return  # an open node: every request may read and write
        header = request.getHeader(b"authorization") or b""
        token = header[7:].strip() if header[:7].lower() == b"bearer " else None
        access = self.grant(token)
        if access is None:
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="doozer"')
            raise DoozerError(
                "UNAUTHORIZED",
                "this node needs a secret: send 'Authorization: Bearer <secret>'",
            )
        request.doozer_access = access  # type: ignore[attr-defined]

    def check_write(self, request: IRequest) -> None:
        """Refuse a write made with the read-only secret (403)."""
        if getattr(request, "doozer_access", "rw") != "rw":
            raise DoozerError(
                "FORBIDDEN", "the read-only secret cannot write; use the read-write secret"
            )


# ----------------------------------------------------------------------
# rendering


def render_value(value: bytes) -> dict[str, str]:
    """A file body in JSON: UTF-8 text, else base64 marked as such."""
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}


#: One encoder for every response (``json.dumps`` with ``separators`` would
#: build a new encoder per call).
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


def json_response(request: IRequest, node: Any, result: Any) -> bytes:
    """Render a result dict or a :class:`DoozerError` as the JSON response."""
    if isinstance(result, DoozerError):
        request.setResponseCode(result.status)
        result = result.body()
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return _finish(request, node, _encode_json(result).encode())


def _finish(request: IRequest, node: Any, body: bytes) -> bytes:
    # A Content-Length spares HTTP/1.1 clients the chunked framing.
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.setHeader(b"X-Doozer-Rev", b"%d" % node.store.rev)
    return body


def run_now(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` as far as it gets without waiting.

    :returns: its result when it finished without waiting for anything
        (a read at the head, say: no Deferred, no scheduling at all), else
        a :class:`Deferred` of the result; cancelling it cancels what the
        coroutine waits on, as with ``ensureDeferred``.
    :raises: whatever the coroutine raised before it first waited.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    # It is suspended on a Deferred that has not fired: Twisted's driver
    # resumes it, finds that Deferred still waiting and waits on it.
    return Deferred.fromCoroutine(coroutine)


def endpoint(f: Callable[..., Any]) -> Callable[..., Union[bytes, "Deferred[bytes]"]]:
    """Turn a route returning a dict (or raw bytes) into a JSON endpoint.

    The route may return its result, a Deferred of it, or be a coroutine.
    Every :class:`DoozerError` becomes its JSON error; anything else is a
    bug, logged and answered ``OTHER`` while the node keeps serving. The
    endpoint returns the response body at once when the route did not wait
    for anything, else a Deferred of it (no coroutine machinery on the way:
    it is per request, and a held watch would keep it all in memory).
    """

    @functools.wraps(f)
    def route(self: Any, request: IRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            result = f(self, request, *args, **kwargs)
            if inspect.iscoroutine(result):
                result = run_now(result)
        except CancelledError:
            raise
        except Exception:
            return _render_failure(Failure(), self.node, request)
        if isinstance(result, Deferred):
            return result.addCallbacks(
                _render_result, _render_failure,
                callbackArgs=(self.node, request), errbackArgs=(self.node, request),
            )
        return _render_result(result, self.node, request)

    return route


def _render_result(result: Any, node: Any, request: IRequest) -> bytes:
    if isinstance(result, bytes):
        return _finish(request, node, result)
    return json_response(request, node, result)


def _render_failure(failure: Failure, node: Any, request: IRequest) -> Any:
    if failure.check(CancelledError):
        return failure  # the client went away; the wait was cancelled
    if failure.check(DoozerError):
        return json_response(request, node, failure.value)
    log.failure("bug while serving {path}", failure, path=request.path)
    return json_response(
        request, node, DoozerError("OTHER", "internal error; see the node's log")
    )


def _write_and_finish(request: IRequest, body: bytes) -> None:
    request.write(body)
    request.finish()


def serve(request: IRequest, result: Union[bytes, "Deferred[bytes]"]) -> object:
    """Send an endpoint's result, as Klein would, without Klein's routing.

    :returns: ``NOT_DONE_YET`` for :meth:`Resource.render`.
    """
    if isinstance(result, bytes):
        _write_and_finish(request, result)
        return server.NOT_DONE_YET
    lost = request.notifyFinish()

    def gone(reason: Failure) -> None:
        # The client went away: stop waiting (a watch costs nothing further).
        result.cancel()

    def failed(failure: Failure) -> None:
        if lost.called:  # finished or disconnected already: nobody to tell
            if not failure.check(CancelledError):
                log.failure("bug while serving {path}", failure, path=request.path)
            return
        request.processingFailed(failure)  # type: ignore[attr-defined]

    def done(body: bytes) -> None:
        if not lost.called:
            _write_and_finish(request, body)

    lost.addErrback(gone)
    result.addCallbacks(done, failed)
    return server.NOT_DONE_YET


class Gate(Resource):
    """Stands in front of the Klein routes: secrets first, then the routes.

    SPEC §3 orders errors: authentication, then endpoint and method, then
    arguments. Klein would answer a non-UTF-8 URL itself, in HTML; the gate
    answers it in JSON first.

    The busiest requests (reads of the store, watches) skip Klein: when
    ``api.direct(request)`` names the route Klein would certainly pick, the
    gate calls it itself. Klein's routing (werkzeug binding and matching,
    its Deferreds and closures) costs more than the rest of a read, and
    every held watch would keep all of it in memory.
    """

    isLeaf = True

    def __init__(self, routes: IResource, api: Any) -> None:
        super().__init__()
        self._routes = routes
        self._api = api

    def render(self, request: IRequest) -> Any:
        if request.path == peer.PATH and not self._api.readonly:
            return self._render_snapshot(request)
        if request.path == peer.CONSENSUS_PATH and not self._api.readonly:
            return self._render_consensus(request)
        try:
            self._api.secrets.check_read(request)
            path = request.path
            if b"%" in path or not path.isascii():
                try:
                    unquote_to_bytes(path).decode("utf-8")
                except UnicodeDecodeError:
                    raise DoozerError("BAD_PATH", "the URL is not valid UTF-8") from None
        except DoozerError as e:
            return json_response(request, self._api.node, e)
        route = self._api.direct(request)
        if route is not None:
            return serve(request, route(request))
        return self._routes.render(request)

    def _render_consensus(self, request: IRequest) -> bytes:
        """This node's consensus state, for operators and the fault suite
        diagnosing a stalled log (not a public endpoint; peers' credentials)."""
        node = self._api.node
        try:
            peer.check_peer(request, self._api.peer_tokens, self._api.secrets.rw,
                            self._api.insecure_peers)
            if node.sequencer is None:
                raise DoozerError("READONLY", "this node is in no cluster yet")
            state = node.sequencer.debug_state()
        except DoozerError as e:
            return json_response(request, node, e)
        state["applied_seqn"] = node.applied_seqn
        state["node_counters"] = dict(node.counters)
        if node.transport_state is not None:
            state["transport"] = node.transport_state()
        return json_response(request, node, state)

    def _render_snapshot(self, request: IRequest) -> bytes:
        """A node snapshot for a joining or lagging peer (not a public endpoint)."""
        node = self._api.node
        try:
            nonce = peer.check_peer(request, self._api.peer_tokens, self._api.secrets.rw,
                                    self._api.insecure_peers)
            body = node.snapshot().encode()
        except DoozerError as e:
            return json_response(request, node, e)
        request.setHeader(b"Content-Type", b"application/x-msgpack")
        if nonce is not None and self._api.cluster_key is not None:
            # The whole answer (the cluster id is in it) bound to this request.
            tag = peer.body_mac(self._api.cluster_key, nonce, body)
            request.setHeader(b"X-Doozer-Snapshot-Mac", tag.encode())
        return _finish(request, node, body)
