"""In-memory fixtures for client tests: nodes on a Clock behind fake addresses.

:class:`Net` is a treq-like object that routes each request by its
``host:port`` to a StubTreq, or fails it the way a dead or hung node would,
so failover and reconnection are tested without sockets or the reactor.
"""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseNeverReceived

from doozer.client import Client
from doozer.node import Node
from doozer.testing import single_node, stub_api


class Net:
    """Addresses (``host:port``) served by StubTreqs, or dead, or hung.

    :ivar calls: ``(method, netloc)`` of every request, in order.
    """

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.hung: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self._pending: dict[str, list[tuple[Deferred[Any], Deferred[Any]]]] = {}

    def serve(self, netloc: str, stub: Any) -> None:
        """Serve ``netloc`` with ``stub`` (a StubTreq)."""
        self.routes[netloc] = stub
        self.hung.discard(netloc)

    def kill(self, netloc: str) -> None:
        """The node at ``netloc`` dies: requests in flight fail as a lost
        connection, new ones are refused."""
        self.routes.pop(netloc, None)
        self.hung.discard(netloc)
        for outer, inner in self._pending.pop(netloc, []):
            if not outer.called:
                outer.errback(ResponseNeverReceived([Failure(ConnectionLost())]))
            inner.cancel()

    def hang(self, netloc: str) -> None:
        """The node at ``netloc`` accepts connections but never answers."""
        self.routes.pop(netloc, None)
        self.hung.add(netloc)

    def request(self, method: str, url: str, **kwargs: Any) -> "Deferred[Any]":
        netloc = urlsplit(url).netloc
        self.calls.append((method, netloc))
        if netloc in self.hung:
            return Deferred()
        stub = self.routes.get(netloc)
        if stub is None:
            return fail(ConnectionRefusedError(netloc))
        inner = stub.request(method, url, **kwargs)
        outer: Deferred[Any] = Deferred(lambda _: inner.cancel())
        pair = (outer, inner)
        self._pending.setdefault(netloc, []).append(pair)

        def done(result: Any) -> Any:
            if pair in self._pending.get(netloc, []):
                self._pending[netloc].remove(pair)
            if not outer.called:
                if isinstance(result, Failure):
                    outer.errback(result)
                else:
                    outer.callback(result)
            return None

        inner.addBoth(done)
        return outer

    def flush(self) -> None:
        """Deliver what every StubTreq has pending."""
        for stub in list(self.routes.values()):
            stub.flush()


class World:
    """One in-memory node on a Clock, served at the given addresses.

    :param addresses: ``host:port`` names that all reach the same node.
    :param settings: node settings for :func:`doozer.testing.single_node`.
    """

    def __init__(self, *addresses: str, stub_options: Optional[dict] = None, **settings: Any) -> None:
        self.clock = Clock()
        self.node: Node = single_node(self.clock, **settings)
        self.net = Net()
        for netloc in addresses or ("node:1",):
            self.net.serve(netloc, stub_api(self.node, **(stub_options or {})))

    def client(self, *netlocs: str, secret: Optional[str] = None, **kwargs: Any) -> Client:
        """A client of the given addresses (default: all served ones)."""
        bases = [f"http://{n}" for n in (netlocs or list(self.net.routes))]
        return Client(bases, secret=secret, http=self.net, clock=self.clock, **kwargs)

    def settle(self) -> None:
        """Let the node decide and every response travel."""
        for _ in range(6):
            self.net.flush()
            self.clock.advance(0)
        self.net.flush()

    def advance(self, seconds: float) -> None:
        """Move time on (in small steps), settling as it goes."""
        step = 0.5
        while seconds > 0:
            self.clock.advance(min(step, seconds))
            seconds -= step
            self.settle()

    def resolve(self, d: "Deferred[Any]") -> Any:
        """Settle, then return ``d``'s result (or raise its failure)."""
        self.settle()
        out: list[Any] = []
        d.addBoth(out.append)
        assert out, "the call did not finish"
        if isinstance(out[0], Failure):
            out[0].raiseException()
        return out[0]

    def write(self, path: str, value: bytes, rev: int = -1) -> int:
        """Write straight through the node (not the client); the new rev."""
        d = self.node.set(path, value, rev)
        return self.resolve(d)


def outcome(d: "Deferred[Any]") -> list[Any]:
    """A list that gets ``d``'s result or Failure when it arrives."""
    out: list[Any] = []
    d.addBoth(out.append)
    return out
