"""A fake resolver for :class:`doozer.node.names.NameBook` in tests."""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer


class FakeDNS:
    """A resolver whose answers the test sets, and that records each question.

    :param records: name -> IP address; a name missing does not resolve.
    """

    def __init__(self, records: dict[str, str]) -> None:
        self.records = records
        self.asked: list[str] = []
        #: when a list, answers are kept back there as (name, Deferred)
        self.held: Optional[list[tuple[str, defer.Deferred]]] = None

    def __call__(self, name: str) -> defer.Deferred:
        self.asked.append(name)
        d: defer.Deferred = defer.Deferred()
        if self.held is not None:
            self.held.append((name, d))
        elif name in self.records:
            d.callback(self.records[name])
        else:
            d.errback(ValueError(f"host name {name!r} does not resolve"))
        return d
