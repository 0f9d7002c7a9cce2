"""One port, two protocols: pick HTTP or doozerd's protocol by the first byte.

A doozerd frame starts with the high byte of a 4-byte big-endian length,
which is ``0x00`` for any frame a node accepts; an HTTP request starts with
a letter (SPEC §7). :class:`SniffingFactory` wraps the two factories: each
connection starts as a :class:`SniffingProtocol` that waits for the first
bytes, builds the chosen protocol from its factory, connects it to the same
transport and replays the bytes into it.

After the choice the chosen protocol is installed as the transport's own
protocol (``tcp.Connection.protocol``, or ``wrappedProtocol`` under TLS,
where the choice is made on the first byte inside TLS), so later bytes and
the connection's end go to it directly, with no forwarding layer in the
way. A transport of another shape gets plain forwarding instead.

A client may stay silent as long as it likes before its first request
(doozerd's clients dial, then send when they have something to ask), so
there is no timeout before the first byte; the HTTP channel has its own
once chosen.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

#: The first byte of every doozerd-protocol connection.
NATIVE_FIRST_BYTE = b"\x00"


class SniffingFactory(Factory):
    """Serve HTTP and doozerd's protocol on one listening port.

    :param http: the factory of HTTP connections (the API's ``Site``).
    :param native: the factory of doozerd-protocol connections
        (:class:`doozer.native.NativeFactory`).
    """

    def __init__(self, http: IProtocolFactory, native: IProtocolFactory) -> None:
        self.http = http
        self.native = native

    def startFactory(self) -> None:
        self.http.doStart()
        self.native.doStart()

    def stopFactory(self) -> None:
        self.http.doStop()
        self.native.doStop()

    def buildProtocol(self, addr: IAddress) -> "SniffingProtocol":
        return SniffingProtocol(self, addr)


class SniffingProtocol(Protocol):
    """A connection whose protocol is not chosen yet.

    :param factory: the :class:`SniffingFactory` holding both factories.
    :param addr: the peer's address, passed on to the chosen factory.
    """

    def __init__(self, factory: SniffingFactory, addr: IAddress) -> None:
        self.factory = factory
        self.addr = addr
        #: The chosen protocol, when the transport could not be re-pointed.
        self.chosen: Optional[IProtocol] = None

    def dataReceived(self, data: bytes) -> None:
        if self.chosen is not None:
            self.chosen.dataReceived(data)
            return
        is_native = data[:1] == NATIVE_FIRST_BYTE
        factory = self.factory.native if is_native else self.factory.http
        chosen = factory.buildProtocol(self.addr)
        if chosen is None:  # the factory refused the connection
            self.transport.loseConnection()
            return
        if not _repoint(self.transport, self, chosen):
            self.chosen = chosen
        chosen.makeConnection(self.transport)
        chosen.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Reached only when the client left before sending a byte, or when
        # the transport could not be re-pointed.
        if self.chosen is not None:
            self.chosen.connectionLost(reason)


def _repoint(transport: Any, old: IProtocol, new: IProtocol) -> bool:
    """Make ``transport`` deliver to ``new`` instead of ``old``; False if it can't."""
    for attribute in ("wrappedProtocol", "protocol"):  # TLS wrapper, TCP connection
        if getattr(transport, attribute, None) is old:
            setattr(transport, attribute, new)
            return True
    return False
