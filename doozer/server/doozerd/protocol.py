"""doozerd's own client protocol (SPEC §7), one Twisted protocol per connection.

A front end only: every verb translates a ``Request`` into a call on the
:class:`~doozer.node.Node` (or a read of its store) and the outcome into a
``Response``, exactly as :mod:`doozer.server.http.api` does for HTTP. Nothing here
decides anything about the store.

Frames are a 4-byte big-endian length and a Protocol Buffers message
(:mod:`doozer.server.doozerd.proto`). Requests may be pipelined: each is answered as soon
as its answer is known, tagged with the request's tag, so a ``WAIT`` holds
up nothing else on the connection. A frame larger than ``max_value + 4096``
or one that does not parse closes the connection; requests still pending
(waits, reads at a future rev, writes in flight) are cancelled at once when
the connection goes, whoever closed it.

Framing, deadlines and the bound on unsent output are
:class:`~doozer.server.doozerd.framing.FrameProtocol`'s (SPEC §12). At most
``--max-outstanding`` requests wait for their answer on one connection
(WAITs, reads at a future rev, writes in flight); past that, a request
whose answer may wait (WAIT, SET, DEL, NOP, a read at a given rev) is
answered at once with ``OTHER`` and detail ``BUSY: ...`` (not served, safe
to retry), while those answered at once (REV, a read at the current rev...)
are still served. Refusing rather than not reading: a client whose
outstanding requests are all WAITs would otherwise hang for good when only
its own next request (a SET, say) could answer them, and doozerd's protocol
has no way to cancel a WAIT.

How the node's error codes become doozerd's ``err_code`` values is one
table, :data:`ERR_CODES`; codes doozerd has no number for are answered
``OTHER`` with the code at the start of ``err_detail`` (docs/compat.md).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from google.protobuf.message import DecodeError
from twisted.internet import defer
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer.server.doozerd import proto
from doozer.errors import DoozerError
from doozer.server.doozerd.framing import FrameProtocol
from doozer.server.auth import Secrets
from doozer.server.limits import COUNTERS, MAX_OUTPUT, MAX_OUTSTANDING, Limits
from doozer.server.doozerd.wait import first_event
from doozer.node import Node
from doozer.store import Dir, Event, File

#: Bytes a frame may carry beyond the largest value (path, tag, rev, framing).
FRAME_SLACK = 4096
#: Seconds a read at a future rev waits for it, as the HTTP API's default.
READ_TIMEOUT = 10.0
#: What doozerd answers (syscall.EACCES) for anything the secret does not grant.
PERMISSION_DENIED = "permission denied"

#: SPEC §3 error codes that have a doozerd number; the others are ``OTHER``.
ERR_CODES: dict[str, int] = {
    "READONLY": proto.ERRORS["READONLY"],
    "TOO_LATE": proto.ERRORS["TOO_LATE"],
    "REV_MISMATCH": proto.ERRORS["REV_MISMATCH"],
    "BAD_PATH": proto.ERRORS["BAD_PATH"],
    "BAD_GLOB": proto.ERRORS["BAD_PATH"],  # a glob is the path argument of WALK/WAIT
    "MISSING_ARG": proto.ERRORS["MISSING_ARG"],
    "NOTDIR": proto.ERRORS["NOTDIR"],
    "ISDIR": proto.ERRORS["ISDIR"],
    "NOENT": proto.ERRORS["NOENT"],
}

Response = Any  # a proto.Response message
Answer = Union[Response, "defer.Deferred[Response]"]


def error_response(error: DoozerError) -> Response:
    """The ``Response`` for a node error (the one place errors are translated)."""
    code = ERR_CODES.get(error.code)
    if code is not None:
        return proto.Response(err_code=code, err_detail=error.detail)
    if error.code == "UNAUTHORIZED":
        return proto.Response(err_code=proto.ERRORS["OTHER"], err_detail=PERMISSION_DENIED)
    return proto.Response(
        err_code=proto.ERRORS["OTHER"], err_detail=f"{error.code}: {error.detail}"
    )


def _denied() -> DoozerError:
    return DoozerError("UNAUTHORIZED", PERMISSION_DENIED)


def _missing(*names: str) -> DoozerError:
    return DoozerError("MISSING_ARG", f"this verb needs {' and '.join(names)}")


class NativeFactory(Factory):
    """Builds a :class:`NativeProtocol` per connection, all serving one node.

    :param node: the node whose operations the protocol serves.
    :param secrets: the rw/ro access secrets (none: open).
    :param limits: the node's client limits (output bound, outstanding
        requests, counters); None: the defaults, counted here.
    """

    log = Logger()
    noisy = False  # no "Starting factory" line: the port's own line says it

    def __init__(
        self,
        node: Node,
        secrets: Optional[Secrets] = None,
        limits: Optional[Limits] = None,
    ) -> None:
        self.node = node
        self.secrets = secrets or Secrets()
        self.max_output = limits.max_output if limits is not None else MAX_OUTPUT
        self.max_outstanding = (
            limits.max_outstanding if limits is not None else MAX_OUTSTANDING
        )
        self.counters = limits.counters if limits is not None else dict.fromkeys(COUNTERS, 0)
        self.connections: set[NativeProtocol] = set()

    def buildProtocol(self, addr: Optional[IAddress]) -> "NativeProtocol":
        return NativeProtocol(self)


class NativeProtocol(FrameProtocol):
    """One doozerd-protocol connection: requests, tags, access, the verbs.

    :param factory: the :class:`NativeFactory` with the node and settings.
    """

    log = Logger()

    def __init__(self, factory: NativeFactory) -> None:
        # A frame may hold a value of --max-value and FRAME_SLACK bytes more.
        super().__init__(factory.node.max_value + FRAME_SLACK, factory.max_output, factory.counters)
        self.factory = factory
        self.node = factory.node
        # doozerd's grant(): an open node grants everything from the start.
        self.access: Optional[str] = "rw" if factory.secrets.rw is None else None
        self.pending: dict[int, defer.Deferred[Response]] = {}
        # (verb, path, rev) -> sorted entries or matching files: a client
        # pages GETDIR/WALK one entry per request at one rev, and the answer
        # at a fixed rev never changes.
        self._listing: tuple[Any, list[Any]] = (None, [])

    # ------------------------------------------------------------------
    # connection

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.factory.connections.discard(self)
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.cancel()

    def frame_received(self, payload: bytes) -> None:
        try:
            request = proto.Request.FromString(payload)
        except DecodeError:
            return self.refuse("a frame is not a valid Request")
        self._serve(request)

    # ------------------------------------------------------------------
    # requests and responses

    def _serve(self, request: Any) -> None:
        tag = request.tag
        if tag in self.pending:
            return self._send(tag, proto.Response(err_code=proto.ERRORS["TAG_IN_USE"]))
        name = _VERBS.get(request.verb) if request.HasField("verb") else None
        if name is None:
            return self._send(tag, proto.Response(err_code=proto.ERRORS["UNKNOWN_VERB"]))
        if len(self.pending) >= self.factory.max_outstanding and _may_wait(request):
            self.factory.counters["outstanding_refused"] += 1
            return self._send(tag, _busy(len(self.pending)))
        try:
            answer = getattr(self, name)(request)
        except DoozerError as e:
            answer = error_response(e)
        except Exception:
            self.log.failure("bug while serving doozerd-protocol verb {verb}", verb=request.verb)
            answer = error_response(DoozerError("OTHER", "internal error; see the node's log"))
        if isinstance(answer, defer.Deferred):
            self.pending[tag] = answer
            answer.addCallbacks(self._done, self._failed, callbackArgs=(tag,), errbackArgs=(tag,))
        else:
            self._send(tag, answer)

    def _done(self, response: Response, tag: int) -> None:
        self.pending.pop(tag, None)
        self._send(tag, response)

    def _failed(self, failure: Failure, tag: int) -> None:
        self.pending.pop(tag, None)
        if isinstance(failure.value, DoozerError):
            return self._send(tag, error_response(failure.value))
        if failure.check(defer.CancelledError) and self._closed:
            return None  # the client went away; nobody to answer
        self.log.failure("bug while serving doozerd-protocol tag {tag}", failure, tag=tag)
        self._send(tag, error_response(DoozerError("OTHER", "internal error; see the node's log")))

    def _send(self, tag: int, response: Response) -> None:
        if self._closed or self.transport is None:
            return
        response.tag = tag
        self.send_frame(proto.frame(response))

    # ------------------------------------------------------------------
    # argument helpers

    def _may_read(self) -> None:
        if self.access is None:
            raise _denied()

    def _may_write(self) -> None:
        if self.access != "rw":
            raise _denied()
        self.node.check_writable()

    @staticmethod
    def _path(request: Any, name: str = "path") -> str:
        if not request.HasField("path"):
            raise _missing(name)
        path = request.path
        if isinstance(path, bytes):  # proto2 hands back bytes that are not UTF-8
            raise DoozerError("BAD_PATH", "the path is not valid UTF-8")
        return str(path)

    def _at(self, request: Any, answer: Callable[[int], Response]) -> Answer:
        """``answer(rev)`` at the request's rev (waiting for it) or the current one."""
        if not request.HasField("rev"):
            return answer(self.node.store.rev)
        return self.node.read_rev(request.rev, READ_TIMEOUT).addCallback(answer)

    def _list(self, key: tuple[Any, ...], make: Callable[[], list[Any]]) -> list[Any]:
        if self._listing[0] != key:
            self._listing = (key, make())
        return self._listing[1]

    # ------------------------------------------------------------------
    # the verbs of SPEC §7, each as doozerd answers it

    def _lookup(self, path: str, rev: int) -> Any:
        """The file or directory at ``path``, or None where doozerd answers
        a missing path with rev 0 rather than an error (GET, STAT)."""
        try:
            return self.node.store.get(path, rev)
        except DoozerError as e:
            if e.code != "NOENT":
                raise
            return None

    def get(self, request: Any) -> Answer:
        self._may_read()
        path = self._path(request)

        def answer(rev: int) -> Response:
            entry = self._lookup(path, rev)
            if entry is None:
                return proto.Response(rev=proto.REV_MISSING)
            if isinstance(entry, Dir):
                raise DoozerError("ISDIR", f"{path} is a directory")
            return proto.Response(rev=entry.rev, value=entry.value)

        return self._at(request, answer)

    def stat(self, request: Any) -> Answer:
        self._may_read()
        path = self._path(request)

        def answer(rev: int) -> Response:
            entry = self._lookup(path, rev)
            if entry is None:
                return proto.Response(len=0, rev=proto.REV_MISSING)
            if isinstance(entry, Dir):
                return proto.Response(len=len(entry.entries), rev=proto.REV_DIR)
            return proto.Response(len=len(entry.value), rev=entry.rev)

        return self._at(request, answer)

    def getdir(self, request: Any) -> Answer:
        self._may_read()
        path = self._path(request)
        if not request.HasField("offset"):
            raise _missing("offset")
        offset = request.offset

        def answer(rev: int) -> Response:
            entries = self._list(
                ("getdir", path, rev), lambda: self.node.store.getdir(path, rev)
            )
            if not 0 <= offset < len(entries):
                return _range(offset, len(entries))
            return proto.Response(path=entries[offset])

        return self._at(request, answer)

    def walk(self, request: Any) -> Answer:
        self._may_read()
        glob = self._path(request, "path (the glob)")
        if not request.HasField("offset"):
            raise _missing("offset")
        offset = request.offset

        def answer(rev: int) -> Response:
            files: list[File] = self._list(
                ("walk", glob, rev), lambda: self.node.store.walk(glob, rev)
            )
            if not 0 <= offset < len(files):
                return _range(offset, len(files))
            f = files[offset]
            return proto.Response(path=f.path, rev=f.rev, value=f.value, flags=proto.FLAG_SET)

        if offset < 0:
            return _range(offset, 0)
        return self._at(request, answer)

    def wait(self, request: Any) -> Answer:
        self._may_read()
        glob = self._path(request, "path (the glob)")
        if not request.HasField("rev"):
            raise _missing("rev")
        return first_event(self.node, glob, request.rev).addCallback(_event_response)

    def set(self, request: Any) -> Answer:
        self._may_write()
        path = self._path(request)
        if not request.HasField("rev"):
            raise _missing("path", "rev")
        rev = _precondition(request.rev)
        return self.node.set(path, request.value, rev, client=self).addCallback(
            lambda new_rev: proto.Response(rev=new_rev)
        )

    def delete(self, request: Any) -> Answer:
        self._may_write()
        path = self._path(request)
        if not request.HasField("rev"):
            raise _missing("path", "rev")
        rev = _precondition(request.rev)
        return self.node.delete(path, rev, client=self).addCallback(lambda _: proto.Response())

    def nop(self, request: Any) -> Answer:
        self._may_write()
        return self.node.nop(client=self).addCallback(lambda _: proto.Response())

    def rev(self, request: Any) -> Answer:
        self._may_read()
        return proto.Response(rev=self.node.store.rev)

    def self_(self, request: Any) -> Answer:
        self._may_read()
        return proto.Response(value=self.node.id.encode())

    def access_(self, request: Any) -> Answer:
        granted = self.factory.secrets.grant(request.value)
        if granted is None:
            raise _denied()
        if self.access != "rw":  # a read-only secret never takes back write access
            self.access = granted
        return proto.Response()


#: The method serving each verb, by name: bound methods kept on the
#: protocol would make each connection a reference cycle.
_VERBS: dict[int, str] = {
    proto.VERBS[verb]: method
    for verb, method in [
        ("GET", "get"), ("SET", "set"), ("DEL", "delete"), ("REV", "rev"),
        ("WAIT", "wait"), ("NOP", "nop"), ("WALK", "walk"), ("GETDIR", "getdir"),
        ("STAT", "stat"), ("SELF", "self_"), ("ACCESS", "access_"),
    ]
}

#: Verbs whose answer always waits (for a change, or for consensus).
_WAITING_VERBS = frozenset(proto.VERBS[v] for v in ("WAIT", "SET", "DEL", "NOP"))


def _may_wait(request: Any) -> bool:
    """Whether the answer may wait: those verbs, and reads at a given rev."""
    return request.verb in _WAITING_VERBS or request.HasField("rev")


def _busy(outstanding: int) -> Response:
    return proto.Response(
        err_code=proto.ERRORS["OTHER"],
        err_detail=f"BUSY: {outstanding} requests are waiting for their answer on this "
        "connection (--max-outstanding); not served, send it again after some answers",
    )


def _range(offset: int, count: int) -> Response:
    return proto.Response(
        err_code=proto.ERRORS["RANGE"],
        err_detail=f"offset {offset} is outside the {count} entries",
    )


def _precondition(rev: int) -> int:
    if rev < -1:
        raise DoozerError("BAD_ARG", f"rev must be -1, 0 or a rev, not {rev}")
    return rev


def _event_response(event: Event) -> Response:
    if event.value is None:
        return proto.Response(path=event.path, rev=event.rev, flags=proto.FLAG_DEL)
    return proto.Response(
        path=event.path, rev=event.rev, value=event.value, flags=proto.FLAG_SET
    )
