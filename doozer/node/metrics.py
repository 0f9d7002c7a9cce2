"""``/metrics`` (SPEC §11): one node's figures in Prometheus's text format.

A :class:`NodeMetrics` is a ``prometheus_client`` collector with its own
:class:`~prometheus_client.CollectorRegistry`, one per node, never the
library's global registry: several nodes in one process (the tests, the
simulators) each show their own figures.

Nothing is counted twice. The figures are read when the endpoint is
scraped from the counters the node keeps anyway (the ones
``/_peer/consensus`` shows, the admission and limits refusals, the data
dir's writer histograms); the only ones noted as things happen are the
write outcomes and round trips of :mod:`doozer.node.stats`. A scrape costs
a pass over a few dicts and the store's watcher index, on the reactor
thread; it touches no disk (a hung disk would otherwise hang it).

docs/operations.md ("Metrics") says what each metric means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, Optional, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from doozer import __version__
from doozer.node import health
from doozer.storage.stats import Histogram

if TYPE_CHECKING:  # the collector reads a node; typing only
    from doozer.node.node import Node

#: What the transport counts that is not a dropped datagram.
_NOT_DROPS = frozenset({"received", "delivered", "sent"})

#: Why the node drops a peer's message (:class:`doozer.node.peers.Peers`),
#: shown from the start at 0.
_MESSAGE_DROPS = ("non_member_dropped", "disk_backlog_dropped", "forward_refused")

#: The sequencer's counters of decided instances, by kind.
_DECIDED = (("value", "decided_value"), ("noop", "decided_noop"), ("skip", "decided_skip"))


class ClientLimits(Protocol):
    """What the collector reads of :class:`doozer.server.limits.Limits`."""

    counters: dict[str, int]
    open: int


class NodeMetrics:
    """The collector of one node's metrics, registered in its own registry.

    :param node: the node.
    :param transport_stats: the UDP transport's counters
        (:attr:`doozer.consensus.transport.UDPTransport.stats`), when the
        node has one (the service's; not a simulated node's).
    :param limits: the client ports' limits and refusal counters.
    """

    def __init__(
        self,
        node: "Node",
        transport_stats: Optional[Callable[[], Mapping[str, int]]] = None,
        limits: Optional[ClientLimits] = None,
    ) -> None:
        self.node = node
        self.transport_stats = transport_stats
        self.limits = limits
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def render(self) -> bytes:
        """The text format of every metric (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        """Every metric family, read now."""
        yield from self._node()
        yield from self._writes()
        yield from self._consensus()
        yield from self._store()
        yield from self._peers()
        yield from self._clients()
        yield from self._storage()

    # ------------------------------------------------------------------

    def _node(self) -> Iterator[Metric]:
        node = self.node
        info = GaugeMetricFamily(
            "doozer_node_info", "This node: its id (new at every start without a data dir), "
            "cluster and version; always 1.", labels=["id", "cluster", "version"])
        info.add_metric([node.id, node.cluster, __version__], 1)
        yield info
        yield GaugeMetricFamily(
            "doozer_member", "1 when this node holds a CAL slot.", value=int(node.member))
        yield GaugeMetricFamily(
            "doozer_voting", "1 when this node votes in the next instance.", value=int(node.voting))
        ready = health.readiness(node, node.clock.seconds())
        yield GaugeMetricFamily(
            "doozer_ready", "1 when /readyz answers 200.", value=int(ready.ok))
        yield GaugeMetricFamily(
            "doozer_fault_tolerance",
            "Voters that may still fail with writes committing (negative: no quorum).",
            value=node.info.fault_tolerance())

    def _writes(self) -> Iterator[Metric]:
        node = self.node
        stats = node.writes.stats
        yield CounterMetricFamily(
            "doozer_writes_committed_total", "Clients' writes proposed here that committed.",
            value=stats.committed)
        failed = dict(stats.failed)
        refused = node.admission.refused
        for reason, n in (("busy", refused["busy"] + refused["busy_share"]),
                          ("nospace", refused["nospace"])):
            failed[reason] = failed.get(reason, 0) + n
        yield _counters(
            "doozer_writes_failed_total", "Clients' writes that failed, by the error code "
            "they were answered (lower case).", "reason", sorted(failed.items()))
        yield _histogram(
            "doozer_commit_latency_seconds",
            "Seconds from proposing a client's write until it was applied here, of committed "
            "writes.", stats.latency)
        yield GaugeMetricFamily(
            "doozer_pending_proposals", "Writes proposed here not yet answered (clients' and the "
            "node's own bookkeeping).", value=len(node.writes))

    def _consensus(self) -> Iterator[Metric]:
        node = self.node
        seq = node.sequencer
        counters: Mapping[str, int] = seq.counters if seq is not None else {}
        yield _counters(
            "doozer_instances_decided_total", "Consensus instances decided here, by kind: value "
            "(writes), noop (the empty batch: revoked, or learned from a peer), skip (its "
            "owner's SKIP).", "kind", [(kind, counters.get(key, 0)) for kind, key in _DECIDED])
        yield CounterMetricFamily(
            "doozer_revocations_total", "Instances this node began to revoke (PREPARE sent; "
            "again after a NACK).", value=counters.get("prepared", 0))
        yield _counters(
            "doozer_consensus_events_total", "The sequencer's counters, as /_peer/consensus "
            "shows them.", "event", sorted(counters.items()))
        yield CounterMetricFamily(
            "doozer_snapshot_installs_total", "Snapshots copied from a peer and installed "
            "(joining, or catching up).", value=node.snapshot_installs)
        yield GaugeMetricFamily(
            "doozer_applied_seqn", "The last consensus instance applied to the store.",
            value=node.applied_seqn)
        yield GaugeMetricFamily(
            "doozer_consensus_queued_items", "Writes waiting to be cut into an instance here.",
            value=len(seq._queue) if seq is not None else 0)
        yield GaugeMetricFamily(
            "doozer_consensus_inflight_instances", "This node's own instances proposed and not "
            "yet decided.", value=seq._inflight if seq is not None else 0)

    def _store(self) -> Iterator[Metric]:
        store = self.node.store
        yield GaugeMetricFamily("doozer_store_rev", "The store's rev.", value=store.rev)
        yield GaugeMetricFamily("doozer_store_files", "Files in the store.", value=store.file_count)
        yield GaugeMetricFamily(
            "doozer_store_bytes", "Bytes of paths and values in the store and its kept history "
            "(what --quota-bytes bounds).", value=store.size)
        yield GaugeMetricFamily(
            "doozer_watchers", "Watches waiting for a change.", value=store.watcher_count())
        yield GaugeMetricFamily("doozer_leases", "Live leases.", value=len(store.leases))

    def _peers(self) -> Iterator[Metric]:
        node = self.node
        stats: Mapping[str, int] = self.transport_stats() if self.transport_stats else {}
        yield CounterMetricFamily(
            "doozer_peer_datagrams_sent_total", "Datagrams written to peers.",
            value=stats.get("sent", 0))
        yield CounterMetricFamily(
            "doozer_peer_datagrams_received_total", "Datagrams read from the UDP port.",
            value=stats.get("received", 0))
        yield _counters(
            "doozer_peer_datagrams_dropped_total", "Datagrams dropped by the transport, by "
            "reason (received: oversized ... replayed; sent: no_address ... queue_dropped).",
            "reason", [(reason, n) for reason, n in sorted(stats.items()) if reason not in _NOT_DROPS])
        counts = {**dict.fromkeys(_MESSAGE_DROPS, 0), **node.counters}
        yield _counters(
            "doozer_peer_messages_dropped_total", "Peers' messages the node did not take, by "
            "reason.", "reason", sorted(counts.items()))
        rtt = HistogramMetricFamily(
            "doozer_peer_round_trip_seconds", "Seconds from an ACCEPT this node sent a peer "
            "until its ACCEPTED came back, per peer.", labels=["peer"])
        for peer, histogram in sorted(node.peers.round_trips.peers.items()):
            rtt.add_metric([peer], _buckets(histogram), histogram.sum)
        yield rtt

    def _clients(self) -> Iterator[Metric]:
        limits = self.limits
        if limits is None:
            return
        yield GaugeMetricFamily(
            "doozer_client_connections", "Open client connections (both client ports).",
            value=limits.open)
        yield _counters(
            "doozer_client_limit_events_total", "Client connections and requests refused, cut "
            "or paused by a limit (docs/operations.md, Limits).", "event",
            sorted(limits.counters.items()))

    def _storage(self) -> Iterator[Metric]:
        storage = self.node.storage
        if storage is None:
            return
        data = storage.data
        yield _histogram(
            "doozer_fsync_seconds", "Seconds each batch of the data dir's log took to become "
            "durable (its write and fsync).", data.stats.fsync)
        yield GaugeMetricFamily(
            "doozer_log_bytes", "Bytes of records in the data dir's log segments.",
            value=data.log_bytes)
        yield GaugeMetricFamily(
            "doozer_log_segments", "Segment files the data dir's log keeps.",
            value=data.log_segments)
        yield GaugeMetricFamily(
            "doozer_snapshot_bytes", "Bytes of the newest snapshot in the data dir.",
            value=data.snapshot_bytes)
        yield GaugeMetricFamily(
            "doozer_unsynced_bytes", "Bytes (about) of records handed to the disk and not yet "
            "fsynced.", value=storage.unsynced)


def _counters(name: str, documentation: str, label: str,
              counts: Iterable[tuple[str, float]]) -> CounterMetricFamily:
    """A counter family with one label: a sample per (label value, count),
    in the order given."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in counts:
        family.add_metric([value], count)
    return family


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, _buckets(histogram), histogram.sum)
