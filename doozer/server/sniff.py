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

The sniffer is also each connection's front door (SPEC §12): with
:class:`~doozer.server.limits.Limits`, a connection over ``--max-conns`` (or
``--max-conns-per-ip``) is refused at once (``buildProtocol`` returns None:
the port closes the socket), and an admitted one gets a
:class:`~doozer.server.limits.Ticket` whose deadline is the request timeout from
connecting: a client (TLS handshake included) that has sent no byte by then
is cut off. The chosen protocol takes the ticket over: its first request
(HTTP) or frame (doozerd's) is still due by that same deadline, and it
gives the ticket back when the connection ends.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory, ITCPTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from doozer.server.limits import Limits, Ticket

#: The first byte of every doozerd-protocol connection.
NATIVE_FIRST_BYTE = b"\x00"


class SniffingFactory(Factory):
    """Serve HTTP and doozerd's protocol on one listening port.

    :param http: the factory of HTTP connections (the API's ``Site``).
    :param native: the factory of doozerd-protocol connections
        (:class:`doozer.server.doozerd.protocol.NativeFactory`); None for an HTTP-only port
        (the WebView), which still gets the admission and the deadline.
    :param limits: the node's client limits, shared by all its ports; None
        admits every connection with no deadline.
    """

    noisy = False  # no "Starting factory" line: the service says where it listens

    def __init__(
        self,
        http: IProtocolFactory,
        native: Optional[IProtocolFactory] = None,
        limits: Optional[Limits] = None,
    ) -> None:
        self.http = http
        self.native = native
        self.limits = limits

    def startFactory(self) -> None:
        self.http.doStart()
        if self.native is not None:
            self.native.doStart()

    def stopFactory(self) -> None:
        self.http.doStop()
        if self.native is not None:
            self.native.doStop()

    def buildProtocol(self, addr: Optional[IAddress]) -> Optional["SniffingProtocol"]:
        ticket = None
        if self.limits is not None:
            ticket = self.limits.admit(addr)
            if ticket is None:
                return None  # over a limit: the port closes the socket at once
        return SniffingProtocol(self, addr, ticket)


class SniffingProtocol(Protocol):
    """A connection whose protocol is not chosen yet.

    :param factory: the :class:`SniffingFactory` holding both factories.
    :param addr: the peer's address, passed on to the chosen factory.
    :param ticket: the connection's place under the limits, if any.
    """

    #: Set by ``makeConnection`` before any other method runs: a TCP
    #: connection, or TLS over one.
    transport: ITCPTransport

    def __init__(
        self, factory: SniffingFactory, addr: Optional[IAddress], ticket: Optional[Ticket] = None
    ) -> None:
        self.factory = factory
        self.addr = addr
        self.ticket = ticket
        #: The chosen protocol, when the transport could not be re-pointed.
        self.chosen: Optional[IProtocol] = None

    def connectionMade(self) -> None:
        ticket = self.ticket
        if ticket is not None:
            ticket.on_expire = self._silent
            ticket.expire_in()
        try:
            # doozerd's clients hold a connection for their life: notice
            # those that vanished without a word (after the kernel's hours).
            self.transport.setTcpKeepAlive(True)
        except (AttributeError, OSError):
            pass  # not TCP underneath

    def _silent(self) -> None:
        """No byte by the deadline (a TLS client may not have finished its handshake)."""
        assert self.ticket is not None
        self.ticket.limits.timed_out()
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.chosen is not None:
            self.chosen.dataReceived(data)
            return
        is_native = data[:1] == NATIVE_FIRST_BYTE and self.factory.native is not None
        factory = self.factory.native if is_native else self.factory.http
        assert factory is not None
        chosen = factory.buildProtocol(self.addr)
        if chosen is None:  # the factory refused the connection
            self.transport.loseConnection()
            return
        # The chosen protocol keeps the ticket and its deadline (the first
        # request is due by the request timeout from connecting).
        chosen.ticket = self.ticket
        if not _repoint(self.transport, self, chosen):
            self.chosen = chosen
        chosen.makeConnection(self.transport)
        chosen.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Reached only when the client left before sending a byte, or when
        # the transport could not be re-pointed.
        if self.chosen is not None:
            self.chosen.connectionLost(reason)
        if self.ticket is not None:
            self.ticket.release()


class TLSFactory(TLSMemoryBIOFactory):
    """TLS in front of a factory that may refuse a connection.

    ``reactor.listenSSL`` wraps the factory in a ``TLSMemoryBIOFactory``,
    which cannot take a refusal (``buildProtocol`` returning None); this one
    passes it on, so the port closes the socket before any handshake.
    """

    noisy = False

    def buildProtocol(self, addr: Optional[IAddress]) -> Any:
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        return self.protocol(self, inner)


def _repoint(transport: Any, old: IProtocol, new: IProtocol) -> bool:
    """Make ``transport`` deliver to ``new`` instead of ``old``; False if it can't."""
    for attribute in ("wrappedProtocol", "protocol"):  # TLS wrapper, TCP connection
        if getattr(transport, attribute, None) is old:
            setattr(transport, attribute, new)
            return True
    return False
