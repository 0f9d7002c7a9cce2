"""Helpers for tests of code built on doozer: in-memory nodes and APIs.

Nothing here opens a socket or touches the global reactor.
"""

from __future__ import annotations

import random
from typing import Any, Optional

from treq.testing import StubTreq
from twisted.internet.task import Clock

from doozer.server.http.api import API
from doozer.server.http.site import Site
from doozer.server.http.txn import BODY_SLACK as TXN_BODY_SLACK
from doozer.server.config import Config
from doozer.server.auth import Secrets
from doozer.node import Node, build_node


def single_node(
    clock: Optional[Clock] = None,
    node_id: str = "TESTNODE",
    seed: int = 0,
    **settings: Any,
) -> Node:
    """A started one-member node on ``clock``, its genesis writes applied.

    :param settings: :class:`~doozer.server.config.Config` fields (``hist``,
        ``pulse``...); the pulse is off unless given.
    """
    clock = clock or Clock()
    settings.setdefault("pulse", 0)
    node = build_node(Config(**settings), clock, node_id, rng=random.Random(seed))
    node.start_genesis()
    clock.advance(0)
    return node


def stub_api(
    node: Node,
    *,
    rw: Optional[bytes] = None,
    ro: Optional[bytes] = None,
    readonly: bool = False,
) -> StubTreq:
    """A treq-like client talking to ``node``'s API in memory.

    After firing anything a long-poll waits on, call ``flush()`` on it (and
    advance the node's clock) so the response is delivered.
    """
    api = API(node, secrets=Secrets(rw, ro), readonly=readonly)
    resource = api.resource()
    stub = StubTreq(resource)
    # Served as a node serves it: the port's Site and channel (the C parser,
    # the lean requests of the busiest routes), not treq's plain Site.
    agent = stub._agent
    site = Site(resource, max_body=node.max_value + TXN_BODY_SLACK, node=node)
    site.reactor = agent._memoryReactor
    agent._serverFactory = site
    return stub
