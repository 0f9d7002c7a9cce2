"""A node's writes that are never decided (doozer/node.py)."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from doozer import mutation
from doozer.errors import DoozerError
from doozer.node import Node
from doozer.testing import single_node


def undecided_node(clock: Clock) -> Node:
    """A node with a 2.5 s write timeout whose writes are never decided."""
    node = single_node(clock, write_timeout=2.5)
    node.sequencer.propose = lambda item, now: None  # no quorum, as it were
    return node


def check_unavailable_after(clock: Clock, seconds: float, failures: list) -> None:
    clock.advance(seconds - 0.1)
    assert failures == []
    clock.advance(0.2)
    err = failures[0]
    assert isinstance(err, DoozerError) and err.code == "UNAVAILABLE"
    assert f"within {seconds:g} s" in str(err)


def test_a_client_write_times_out_after_the_write_timeout() -> None:
    clock = Clock()
    failures: list[Any] = []
    undecided_node(clock).set("/x", b"1").addErrback(lambda f: failures.append(f.value))
    check_unavailable_after(clock, 2.5, failures)


def test_a_bookkeeping_write_says_it_waited_30_s() -> None:
    """The node's own writes wait at least 30 s. The UNAVAILABLE text once
    named the client timeout for them too, so node logs said "2 s" for
    writes that had waited 30 (and misled the reading of a stall)."""
    clock = Clock()
    node = undecided_node(clock)
    failures: list[Any] = []

    def observe(event: dict) -> None:
        if "err" in event:
            failures.append(event["err"])

    globalLogPublisher.addObserver(observe)
    try:
        node._internal_write(mutation.SET, "/x", b"1")
        check_unavailable_after(clock, 30.0, failures)
    finally:
        globalLogPublisher.removeObserver(observe)
