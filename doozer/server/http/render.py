"""Answers in JSON: file values, errors (one place maps every error to its
status), ``X-Doozer-Rev`` on every answer, and routes that may be
coroutines or Deferreds."""

from __future__ import annotations

import base64
import functools
import inspect
import json
from typing import Any, Callable, Coroutine, Union

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from doozer.errors import DoozerError
from doozer.server.http.lean import LeanRequest

log = Logger()


def render_value(value: bytes) -> dict[str, str]:
    """A file body in JSON: UTF-8 text, else base64 marked as such."""
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}


#: One encoder for every response (``json.dumps`` with ``separators`` would
#: build a new encoder per call).
encode_json = json.JSONEncoder(separators=(",", ":")).encode


def json_response(request: IRequest, node: Any, result: Any) -> bytes:
    """Render a result dict or a :class:`DoozerError` as the JSON response."""
    if isinstance(result, DoozerError):
        request.setResponseCode(result.status)
        result = result.body()
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return _finish(request, node, encode_json(result).encode())


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
    A result that is a resource is Klein's to render (it streams itself).
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


def _render_result(result: Any, node: Any, request: IRequest) -> Any:
    if isinstance(result, bytes):
        return _finish(request, node, result)
    if not isinstance(result, dict) and IResource.providedBy(result):
        return result  # it answers for itself (a backup's stream); Klein renders it
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


def serve(request: server.Request, result: Union[bytes, "Deferred[bytes]"]) -> object:
    """Send an endpoint's result, as Klein would, without Klein's routing.

    :returns: ``NOT_DONE_YET`` for :meth:`Resource.render`.
    """
    if isinstance(result, bytes):
        _write_and_finish(request, result)
        return server.NOT_DONE_YET
    if isinstance(request, LeanRequest):  # it does the same, lighter
        request.serve_later(result)
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
        request.processingFailed(failure)

    def done(body: bytes) -> None:
        if not lost.called:
            _write_and_finish(request, body)

    lost.addErrback(gone)
    result.addCallbacks(done, failed)
    return server.NOT_DONE_YET
