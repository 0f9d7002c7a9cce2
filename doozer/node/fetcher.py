"""Copying a snapshot from a peer when a node is left behind the log.

The sequencer says when it needs one (``snapshot_needed``: peers ahead of
it no longer keep what it misses). The :class:`SnapshotFetcher` picks a
source among the other CAL members, fetches, installs, and backs off when
that did not help: a snapshot that is not ahead of this node (its source was
behind too) waits longer before the next one, so a node never copies a whole
store every round of chores. A fetch that fails (its source dead, stopped or
cut off) costs no copy and is tried again, from a source chosen afresh,
:data:`FIRST_BACKOFF` later: doubling that wait too left a node that had
been cut off, or had picked a dead member still in the CAL, waiting seconds
after it could reach a live source again, and when its vote was needed for a
quorum the whole cluster (lease expiries included, SPEC §9 G2) waited with
it (the lease simulation, tests/leasesim.py, found it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer.addr import Addr, format_addr
from doozer.node.snapshot import Snapshot, snapshot_sources

if TYPE_CHECKING:  # the service wires the fetcher to its node; typing only
    from doozer.node.node import Node

#: First and longest wait after a fetch that did not help (seconds).
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


class SnapshotFetcher:
    """Fetches and installs snapshots for one node.

    :param node: the :class:`~doozer.node.Node`.
    :param fetch: ``fetch(addr) -> Deferred[Snapshot]`` (HTTP in the service,
        the simulated network in tests).
    :param address_of: a peer id's address as the transport knows it.
    :param clock: time.
    """

    log = Logger()

    def __init__(
        self,
        node: "Node",
        fetch: Callable[[Addr], "defer.Deferred[Snapshot]"],
        address_of: Callable[[str], Optional[Addr]],
        clock: IReactorTime,
    ) -> None:
        self.node = node
        self.fetch = fetch
        self.address_of = address_of
        self.clock = clock
        self.fetching = False
        self.fetches = 0
        self._backoff = 0.0
        self._retry_at = float("-inf")
        self._no_source_logged = False

    def chores(self) -> None:
        """Start a fetch when the node needs a snapshot and none is running."""
        node = self.node
        seq = node.sequencer
        if seq is None or not seq.snapshot_needed or self.fetching:
            return
        if self.clock.seconds() < self._retry_at:
            return
        candidates = snapshot_sources(node, self.address_of)
        if not candidates:
            if not self._no_source_logged:
                self._no_source_logged = True
                self.log.warn(
                    "left behind the log, but no address is known for any other "
                    "member to copy state from; waiting to hear from one"
                )
            return
        self._no_source_logged = False
        self.fetching = True
        self.fetches += 1
        addr = node.rng.choice(candidates)
        self.log.info("left behind the log: copying state from {addr}", addr=format_addr(addr))
        d = defer.maybeDeferred(self.fetch, addr)
        d.addCallback(node.install)
        d.addCallbacks(self._done, self._failed)

    def _done(self, installed: bool) -> None:
        self.fetching = False
        if installed:
            self._backoff = 0.0
            self._retry_at = float("-inf")
        else:
            self._wait("the snapshot was not ahead of this node")

    def _failed(self, failure: Failure) -> None:
        self.fetching = False
        self._wait(failure.getErrorMessage(), escalate=False)

    def _wait(self, why: str, escalate: bool = True) -> None:
        if escalate:
            self._backoff = min(MAX_BACKOFF, max(FIRST_BACKOFF, 2 * self._backoff))
        wait = self._backoff if escalate else FIRST_BACKOFF
        self._retry_at = self.clock.seconds() + wait
        self.log.warn(
            "copying state did not help ({why}); next try in {wait:g} s",
            why=why,
            wait=wait,
        )
