"""A doozerd-protocol client for the tests, written from SPEC §7 alone.

It builds its own Request/Response classes with the Protocol Buffers
library from the field table of the spec (not from :mod:`doozer.server.doozerd.proto`), so
the server's message definitions are checked against the spec too.

Two transports: :class:`MemoryConn` drives a server protocol in memory (a
``StringTransport`` and the node's Clock: deterministic), and
:class:`SocketConn` talks to a real node over TCP (blocking, for process
tests and benchmarks).

:class:`Native` is the server side for the in-memory tests: a one-member
node on a Clock and the server's factory of connections.
"""

from __future__ import annotations

import itertools
import socket
import struct
from typing import Any, Optional

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from doozer.server.auth import Secrets
from doozer.server.doozerd.protocol import NativeFactory
from doozer.testing import single_node

VERB = dict(GET=1, SET=2, DEL=3, REV=5, WAIT=6, NOP=7, WALK=9, GETDIR=14, STAT=16, SELF=20, ACCESS=99)
ERR = dict(OTHER=127, TAG_IN_USE=1, UNKNOWN_VERB=2, READONLY=3, TOO_LATE=4, REV_MISMATCH=5,
           BAD_PATH=6, MISSING_ARG=7, RANGE=8, NOTDIR=20, ISDIR=21, NOENT=22)
SET, DEL = 4, 8


def _classes() -> tuple[Any, Any]:
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="spec7.proto", package="spec7", syntax="proto2")
    types = {"int32": F.TYPE_INT32, "int64": F.TYPE_INT64, "string": F.TYPE_STRING,
             "bytes": F.TYPE_BYTES, "enum": F.TYPE_ENUM}
    for name, enum_name, enum, fields in [
        ("Request", "Verb", VERB, "tag 1 int32, verb 2 enum, path 4 string, value 5 bytes, "
                                  "other_tag 6 int32, offset 7 int32, rev 9 int64"),
        ("Response", "Err", ERR, "tag 1 int32, flags 2 int32, rev 3 int64, path 5 string, "
                                 "value 6 bytes, len 8 int32, err_code 100 enum, err_detail 101 string"),
    ]:
        msg = fdp.message_type.add(name=name)
        e = msg.enum_type.add(name=enum_name)
        for k, v in enum.items():
            e.value.add(name=k, number=v)
        for spec in fields.split(", "):
            fname, number, kind = spec.split()
            f = msg.field.add(name=fname, number=int(number), type=types[kind], label=F.LABEL_OPTIONAL)
            if kind == "enum":
                f.type_name = f".spec7.{name}.{enum_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("spec7.Request")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("spec7.Response")))


Request, Response = _classes()


def encode(**fields: Any) -> bytes:
    """One framed Request (``verb`` may be a name)."""
    if isinstance(fields.get("verb"), str):
        fields["verb"] = VERB[fields["verb"]]
    body = Request(**fields).SerializeToString()
    return struct.pack(">I", len(body)) + body


def decode_all(data: bytes) -> tuple[list[Any], bytes]:
    """The complete Responses framed in ``data`` and the bytes left over."""
    out = []
    while len(data) >= 4:
        (n,) = struct.unpack(">I", data[:4])
        if len(data) < 4 + n:
            break
        out.append(Response.FromString(data[4 : 4 + n]))
        data = data[4 + n :]
    return out, data


def err(r: Any) -> Optional[str]:
    """The error name of a response, or None."""
    if not r.HasField("err_code"):
        return None
    return {v: k for k, v in ERR.items()}[r.err_code]


class MemoryConn:
    """A client connection to a server protocol, in memory on the node's Clock.

    :param factory: the server's protocol factory (``NativeFactory`` or a
        ``SniffingFactory``).
    :param clock: the node's clock, advanced to let writes decide.
    """

    def __init__(self, factory: Any, clock: Clock) -> None:
        self.clock = clock
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol = factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self._tags = itertools.count(1)
        self._rest = b""
        self.received: dict[int, Any] = {}

    def send(self, **fields: Any) -> int:
        """Send one request without waiting; returns its tag."""
        fields.setdefault("tag", next(self._tags))
        self.send_raw(encode(**fields))
        return fields["tag"]

    def send_raw(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def settle(self) -> list[Any]:
        """Let the node decide; return the responses that arrived."""
        for _ in range(5):
            self.clock.advance(0)
        data = self._rest + self.transport.value()
        self.transport.clear()
        responses, self._rest = decode_all(data)
        for r in responses:
            self.received[r.tag] = r
        return responses

    def call(self, verb: str, **fields: Any) -> Any:
        """Send one request and return its response (it must arrive)."""
        tag = self.send(verb=verb, **fields)
        self.settle()
        assert tag in self.received, f"no answer to {verb} {fields}"
        return self.received.pop(tag)

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def disconnect(self) -> None:
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionLost()))


class SocketConn:
    """A blocking doozerd-protocol client over TCP (one request at a time, or pipelined)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._tags = itertools.count(1)
        self._rest = b""

    def send(self, **fields: Any) -> int:
        fields.setdefault("tag", next(self._tags))
        self.sock.sendall(encode(**fields))
        return fields["tag"]

    def recv(self) -> Any:
        """The next response, whatever its tag."""
        while True:
            responses, rest = decode_all(self._rest)
            if responses:
                first = self._rest[: 4 + struct.unpack(">I", self._rest[:4])[0]]
                self._rest = self._rest[len(first) :]
                return responses[0]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the node")
            self._rest += chunk

    def call(self, verb: str, **fields: Any) -> Any:
        tag = self.send(verb=verb, **fields)
        r = self.recv()
        assert r.tag == tag, (r, tag)
        return r

    def close(self) -> None:
        self.sock.close()


class Native:
    """A node on a Clock and a factory of in-memory native connections."""

    def __init__(self, rw: bytes | None = None, ro: bytes | None = None, **settings) -> None:
        self.clock = Clock()
        self.node = single_node(self.clock, **settings)
        self.factory = NativeFactory(self.node, Secrets(rw, ro))

    def conn(self) -> MemoryConn:
        return MemoryConn(self.factory, self.clock)

