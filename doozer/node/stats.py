"""What a node counts as it goes, for ``/metrics`` (SPEC §11): its clients'
write outcomes with the commit latency, and the round trips of its
proposals to each peer.

These are the only figures the node must note at the moment something
happens; everything else ``/metrics`` shows (the store's size, the
consensus and transport counters, the data dir's histograms) is read when
it is scraped (:mod:`doozer.node.metrics`). So each hook here is cheap on
the hot path: an integer or a bucket incremented, on the reactor thread,
no lock, no allocation per event beyond a dict entry, and nothing here
imports ``prometheus_client``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable

from doozer.consensus.messages import Accept, Accepted, Ballot, Message
from doozer.errors import DoozerError
from doozer.storage.stats import SECONDS, Histogram

__all__ = ["RoundTrips", "WriteStats"]


class WriteStats:
    """The outcomes of the writes clients asked this node for.

    A write is counted once, when its writer is answered: committed (with
    the seconds from its proposal until it was applied here, in
    :attr:`latency`), or failed with the code the client got, lower case
    (``rev_mismatch``, ``noent``, ``unavailable``...). Writes refused
    before they were proposed (``busy``, ``nospace``) are counted by
    :class:`doozer.node.admission.Admission`; the node's own bookkeeping
    writes are not counted at all.
    """

    def __init__(self) -> None:
        self.committed = 0
        #: failed writes by reason (the error code, lower case)
        self.failed: dict[str, int] = {}
        #: seconds from proposal to commit, of committed writes
        self.latency = Histogram(SECONDS)

    def commit(self, seconds: float) -> None:
        """A write committed ``seconds`` after it was proposed."""
        self.committed += 1
        self.latency.add(seconds)

    def fail(self, error: DoozerError) -> None:
        """A write failed with ``error`` (what its client is answered)."""
        reason = error.code.lower()
        self.failed[reason] = self.failed.get(reason, 0) + 1


class RoundTrips:
    """Seconds from an ACCEPT this node sent as coordinator (its own
    proposal, or a revocation's phase 2) until the peer's ACCEPTED for it
    came back, per peer: the network both ways plus the peer's work (in
    durable mode, its fsync of the accept).

    :param node_id: this node's id (the ACCEPTs it coordinates carry it
        in their ballot).
    :param max_open: ACCEPTs awaiting their answer that are remembered
        (the oldest are forgotten first: a dead peer never answers).
    :param max_peers: peers with a histogram (a restarted peer is a new
        id; the one heard from least recently is dropped first).
    """

    def __init__(self, node_id: str, max_open: int = 4096, max_peers: int = 64) -> None:
        self.node_id = node_id
        self.max_open = max_open
        self.max_peers = max_peers
        self._sent: OrderedDict[tuple[int, Ballot, str], float] = OrderedDict()
        #: peer id -> round-trip seconds, most recently heard last
        self.peers: OrderedDict[str, Histogram] = OrderedDict()

    def sent(self, outbox: Iterable[tuple[str, Message]], now: float) -> None:
        """The node sends ``outbox`` (``(peer, message)`` pairs) at ``now``.

        A retransmitted ACCEPT keeps its first time: a lost datagram is
        part of the round trip the write waited for.
        """
        me = self.node_id
        sent = self._sent
        for dest, message in outbox:
            if type(message) is Accept and message.ballot[1] == me:
                key = (message.seqn, message.ballot, dest)
                if key not in sent:
                    sent[key] = now
                    if len(sent) > self.max_open:
                        sent.popitem(last=False)

    def received(self, sender: str, message: Accepted, now: float) -> None:
        """``sender``'s ACCEPTED arrived at ``now``; only the first answer
        to an ACCEPT this node sent it counts."""
        at = self._sent.pop((message.seqn, message.ballot, sender), None)
        if at is None:
            return
        peers = self.peers
        histogram = peers.get(sender)
        if histogram is None:
            histogram = peers[sender] = Histogram(SECONDS)
            if len(peers) > self.max_peers:
                peers.popitem(last=False)
        else:
            peers.move_to_end(sender)
        histogram.add(now - at)
