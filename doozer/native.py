"""doozerd's own client protocol (SPEC §7), one Twisted protocol per connection.

A front end only: every verb translates a ``Request`` into a call on the
:class:`~doozer.node.Node` (or a read of its store) and the outcome into a
``Response``, exactly as :mod:`doozer.api` does for HTTP. Nothing here
decides anything about the store.

Frames are a 4-byte big-endian length and a Protocol Buffers message
(:mod:`doozer.proto`). Requests may be pipelined: each is answered as soon
as its answer is known, tagged with the request's tag, so a ``WAIT`` holds
up nothing else on the connection. A frame larger than ``max_value + 4096``
or one that does not parse closes the connection; requests still pending
(waits, reads at a future rev, writes in flight) are cancelled at once when
the connection goes, whoever closed it.

How the node's error codes become doozerd's ``err_code`` values is one
table, :data:`ERR_CODES`; codes doozerd has no number for are answered
``OTHER`` with the code at the start of ``err_detail`` (docs/compat.md).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from google.protobuf.message import DecodeError
from twisted.internet import defer
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer import proto
from doozer.errors import DoozerError
from doozer.httputil import Secrets
from doozer.node import Node
from doozer.store import Dir, Event, File

#: Bytes a frame may carry beyond the largest value (path, tag, rev, framing).
FRAME_SLACK = 4096
#: Seconds a read at a future rev waits for it, as the HTTP API's default.
READ_TIMEOUT = 10.0
#: A WAIT never times out; it re-arms the node's watch at this interval
#: so that no timer is ever scheduled absurdly far in the future.
WAIT_SLICE = 3600.0
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
    :param max_value: largest accepted file body, in bytes; frames may be
        :data:`FRAME_SLACK` bytes larger.
    """

    log = Logger()
    noisy = False  # no "Starting factory" line: the port's own line says it

    def __init__(
        self, node: Node, secrets: Optional[Secrets] = None, max_value: int = 32768
    ) -> None:
        self.node = node
        self.secrets = secrets or Secrets()
        self.max_value = max_value
        self.connections: set[NativeProtocol] = set()

    def buildProtocol(self, addr: IAddress) -> "NativeProtocol":
        return NativeProtocol(self)


class NativeProtocol(Protocol):
    """One doozerd-protocol connection: framing, tags, access, the verbs.

    :param factory: the :class:`NativeFactory` with the node and settings.
    """

    log = Logger()

    def __init__(self, factory: NativeFactory) -> None:
        self.factory = factory
        self.node = factory.node
        self.max_value = factory.max_value
        self.max_frame = factory.max_value + FRAME_SLACK
        # doozerd's grant(): an open node grants everything from the start.
        self.access: Optional[str] = "rw" if factory.secrets.rw is None else None
        self.pending: dict[int, defer.Deferred[Response]] = {}
        self._buffer = b""
        self._closed = False
        # (verb, path, rev) -> sorted entries or matching files: a client
        # pages GETDIR/WALK one entry per request at one rev, and the answer
        # at a fixed rev never changes.
        self._listing: tuple[Any, list[Any]] = (None, [])
        self._verbs: dict[int, Callable[[Any], Answer]] = {
            proto.VERBS["GET"]: self.get,
            proto.VERBS["SET"]: self.set,
            proto.VERBS["DEL"]: self.delete,
            proto.VERBS["REV"]: self.rev,
            proto.VERBS["WAIT"]: self.wait,
            proto.VERBS["NOP"]: self.nop,
            proto.VERBS["WALK"]: self.walk,
            proto.VERBS["GETDIR"]: self.getdir,
            proto.VERBS["STAT"]: self.stat,
            proto.VERBS["SELF"]: self.self_,
            proto.VERBS["ACCESS"]: self.access_,
        }

    # ------------------------------------------------------------------
    # connection and framing

    def connectionMade(self) -> None:
        self.factory.connections.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self.factory.connections.discard(self)
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.cancel()

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return  # refused: what follows is not read
        buf = self._buffer + data if self._buffer else data
        pos = 0
        end = len(buf)
        while end - pos >= proto.HEADER and not self._closed:
            size = proto.frame_length(buf[pos : pos + proto.HEADER])
            if size > self.max_frame:
                return self._refuse(f"a frame of {size} bytes is over the limit {self.max_frame}")
            stop = pos + proto.HEADER + size
            if stop > end:
                break
            try:
                request = proto.Request.FromString(buf[pos + proto.HEADER : stop])
            except DecodeError:
                return self._refuse("a frame is not a valid Request")
            pos = stop
            self._serve(request)
        self._buffer = buf[pos:]

    def _refuse(self, why: str) -> None:
        """Close the connection on input that is not doozerd's protocol."""
        self.log.info("closing doozerd-protocol connection {peer}: {why}",
                      peer=self.transport.getPeer() if self.transport else None, why=why)
        self._closed = True
        self._buffer = b""
        self.transport.loseConnection()

    # ------------------------------------------------------------------
    # requests and responses

    def _serve(self, request: Any) -> None:
        tag = request.tag
        if tag in self.pending:
            return self._send(tag, proto.Response(err_code=proto.ERRORS["TAG_IN_USE"]))
        verb = self._verbs.get(request.verb) if request.HasField("verb") else None
        if verb is None:
            return self._send(tag, proto.Response(err_code=proto.ERRORS["UNKNOWN_VERB"]))
        try:
            answer = verb(request)
        except DoozerError as e:
            answer = error_response(e)
        except Exception:
            self.log.failure("bug while serving doozerd-protocol verb {verb}", verb=request.verb)
            answer = error_response(DoozerError("OTHER", "internal error; see the node's log"))
        if isinstance(answer, defer.Deferred):
            self.pending[tag] = answer
            answer.addCallbacks(self._done, self._failed, (tag,), None, (tag,))
        else:
            self._send(tag, answer)

    def _done(self, response: Response, tag: int) -> None:
        self.pending.pop(tag, None)
        self._send(tag, response)

    def _failed(self, failure: Failure, tag: int) -> None:
        self.pending.pop(tag, None)
        if failure.check(DoozerError):
            return self._send(tag, error_response(failure.value))
        if failure.check(defer.CancelledError) and self._closed:
            return None  # the client went away; nobody to answer
        self.log.failure("bug while serving doozerd-protocol tag {tag}", failure, tag=tag)
        self._send(tag, error_response(DoozerError("OTHER", "internal error; see the node's log")))

    def _send(self, tag: int, response: Response) -> None:
        if self._closed or self.transport is None:
            return
        response.tag = tag
        self.transport.write(proto.frame(response))

    # ------------------------------------------------------------------
    # argument helpers

    def _may_read(self) -> None:
        if self.access is None:
            raise _denied()

    def _may_write(self) -> None:
        if self.access != "rw":
            raise _denied()
        if not self.node.writable:
            raise DoozerError(
                "READONLY", "this node is not a member of the cluster; write to a member"
            )

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
        return _first_event(self.node, glob, request.rev).addCallback(_event_response)

    def set(self, request: Any) -> Answer:
        self._may_write()
        path = self._path(request)
        if not request.HasField("rev"):
            raise _missing("path", "rev")
        if len(request.value) > self.max_value:
            raise DoozerError(
                "TOO_LARGE",
                f"the value is larger than {self.max_value} bytes (--max-value)",
            )
        rev = _precondition(request.rev)
        return self.node.set(path, request.value, rev).addCallback(
            lambda new_rev: proto.Response(rev=new_rev)
        )

    def delete(self, request: Any) -> Answer:
        self._may_write()
        path = self._path(request)
        if not request.HasField("rev"):
            raise _missing("path", "rev")
        rev = _precondition(request.rev)
        return self.node.delete(path, rev).addCallback(lambda _: proto.Response())

    def nop(self, request: Any) -> Answer:
        self._may_write()
        return self.node.nop().addCallback(lambda _: proto.Response())

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


def _first_event(node: Node, glob: str, rev: int) -> "defer.Deferred[Event]":
    """The first change to a file matching ``glob`` at ``rev`` or later, however long it takes.

    The node's watch takes a timeout; this re-arms it every
    :data:`WAIT_SLICE` seconds from where it left off. Cancelling the
    returned Deferred cancels the watch at once.
    """
    current: list[defer.Deferred[Any]] = []
    result: defer.Deferred[Event] = defer.Deferred(lambda _: current[0].cancel())

    def arm(start: int) -> None:
        # Raises at once for a bad glob or a rev older than the history.
        watch = node.watch(glob, start, 1, WAIT_SLICE)
        current[:] = [watch]
        watch.addCallbacks(got, result.errback)

    def got(found: tuple[list[Event], int]) -> None:
        events, next_rev = found
        if events:
            result.callback(events[0])
            return
        try:
            arm(next_rev)
        except DoozerError as e:
            result.errback(e)

    arm(rev)
    return result
