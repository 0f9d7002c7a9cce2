"""``/metrics``' collector (:mod:`doozer.node.metrics`): every metric SPEC
§11 names is there, in Prometheus's conventions, parses, and moves when
its event happens; each node has its own registry.

In memory: one-member nodes on a Clock, real three-node clusters on the
simulated network (:mod:`nodesim`), a transport fed datagrams by hand, and
a data dir on tmp_path."""

from __future__ import annotations

import random
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from doozer.consensus.messages import Learn
from doozer.consensus.transport import UDPTransport
from doozer.consensus.value import NOOP
from doozer.errors import DoozerError
from doozer.node import build_node
from doozer.node.metrics import NodeMetrics
from doozer.server.config import Config
from doozer.server.limits import Limits
from doozer.testing import single_node
from node.test_datadir import durable_node, settle
from nodesim import NodeSim

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

#: SPEC §11's list, by the name each has here, and its type.
SPEC_METRICS = {
    "doozer_writes_committed": "counter",
    "doozer_writes_failed": "counter",
    "doozer_commit_latency_seconds": "histogram",
    "doozer_instances_decided": "counter",
    "doozer_revocations": "counter",
    "doozer_pending_proposals": "gauge",
    "doozer_store_rev": "gauge",
    "doozer_store_files": "gauge",
    "doozer_watchers": "gauge",
    "doozer_leases": "gauge",
    "doozer_peer_datagrams_sent": "counter",
    "doozer_peer_datagrams_received": "counter",
    "doozer_peer_datagrams_dropped": "counter",
    "doozer_peer_round_trip_seconds": "histogram",
    "doozer_snapshot_installs": "counter",
}
#: ... and those shown with --data-dir only.
DATA_DIR_METRICS = {
    "doozer_fsync_seconds": "histogram",
    "doozer_log_bytes": "gauge",
    "doozer_log_segments": "gauge",
    "doozer_snapshot_bytes": "gauge",
}


def families(metrics: NodeMetrics) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}


def scrape(metrics: NodeMetrics) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(metrics.render().decode())
        for s in f.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def failed(metrics: NodeMetrics, reason: str) -> float:
    return value(scrape(metrics), "doozer_writes_failed_total", reason=reason)


def test_every_spec_metric_is_there_with_its_type_and_the_text_parses() -> None:
    """A one-member node without a data dir shows SPEC §11's list (and not
    the data dir's); counters end in ``_total``, histograms have their
    ``_bucket``/``_count``/``_sum`` with ``+Inf`` last; metric names are
    snake case under ``doozer_``."""
    metrics = NodeMetrics(single_node())
    found = families(metrics)
    for name, kind in SPEC_METRICS.items():
        assert name in found, name
        assert found[name].type == kind, name
    assert not set(DATA_DIR_METRICS) & set(found)
    text = metrics.render().decode()
    assert "doozer_writes_committed_total " in text
    assert 'doozer_commit_latency_seconds_bucket{le="+Inf"}' in text
    for name in found:
        assert name.startswith("doozer_") and name == name.lower(), name


def test_a_committed_write_moves_the_count_and_the_latency_histogram() -> None:
    """A write decided 0.25 s after it was proposed: one more committed,
    one more observation in the le=0.3 bucket, none in le=0.2."""
    clock = Clock()
    node = single_node(clock)
    metrics = NodeMetrics(node)
    before = scrape(metrics)
    d = node.set("/a", b"1")
    clock.advance(0.25)  # the pump runs now: decided and applied 0.25 s later
    assert d.called
    after = scrape(metrics)
    assert value(after, "doozer_writes_committed_total") == value(before, "doozer_writes_committed_total") + 1
    le = lambda s, b: value(s, "doozer_commit_latency_seconds_bucket", le=b)  # noqa: E731
    assert le(after, "0.3") - le(before, "0.3") == 1
    assert le(after, "0.2") == le(before, "0.2")
    assert value(after, "doozer_commit_latency_seconds_sum") == pytest.approx(0.25)
    assert value(after, "doozer_store_rev") == node.store.rev
    assert value(after, "doozer_store_files") == node.store.file_count
    assert value(after, "doozer_instances_decided_total", kind="value") > value(
        before, "doozer_instances_decided_total", kind="value")


def test_the_node_s_own_bookkeeping_is_not_a_client_write() -> None:
    """Genesis wrote /ctl/name, the CAL and the node's record: no client
    write is counted for them."""
    metrics = NodeMetrics(single_node())
    assert value(scrape(metrics), "doozer_writes_committed_total") == 0


def test_failed_writes_are_counted_by_the_code_their_client_got() -> None:
    """A stale rev is ``rev_mismatch``, a missing lease ``noent``, a write
    not decided in time ``unavailable``, one refused for room ``busy``."""
    clock = Clock()
    node = single_node(clock, max_pending=1)
    metrics = NodeMetrics(node)
    node.set("/a", b"1")
    clock.advance(0)
    d = node.set("/a", b"2", rev=1)
    clock.advance(0)
    assert isinstance(_result(d), Failure) and failed(metrics, "rev_mismatch") == 1
    node.set("/a", b"1", lease="AAAAAAAAAAAAAAAA").addErrback(lambda f: None)
    clock.advance(0)
    assert failed(metrics, "noent") == 1
    node._pump = lambda: None  # type: ignore[method-assign] # nothing is decided from now on
    pending = node.set("/b", b"1", client="one")
    with pytest.raises(DoozerError) as refused:
        node.set("/c", b"1", client="two")
    assert refused.value.code == "BUSY" and failed(metrics, "busy") == 1
    assert value(scrape(metrics), "doozer_pending_proposals") == 1
    clock.advance(node.write_timeout + 1)
    assert _result(pending).value.code == "UNAVAILABLE"
    assert failed(metrics, "unavailable") == 1
    assert value(scrape(metrics), "doozer_writes_committed_total") == 1


def _result(d: Any) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def test_watchers_go_up_and_down_and_a_lease_shows() -> None:
    clock = Clock()
    node = single_node(clock)
    metrics = NodeMetrics(node)
    watch = node.watch("/w/**", None, 10, 30)
    assert value(scrape(metrics), "doozer_watchers") == 1
    watch.cancel()
    watch.addErrback(lambda f: None)
    assert value(scrape(metrics), "doozer_watchers") == 0
    node.grant(10, client="c")
    clock.advance(0)
    assert value(scrape(metrics), "doozer_leases") == 1


def test_datagrams_dropped_by_reason_and_messages_refused() -> None:
    """The transport's counters: one datagram of an unknown version, one
    too large; and a non-member's message the node does not take."""
    clock = Clock()
    node = single_node(clock)
    transport = UDPTransport(cluster_name="local", cluster_id="x", node_id=node.id,
                             deliver=node.peers.receive, max_datagram=100)
    metrics = NodeMetrics(node, lambda: transport.stats)
    transport.datagramReceived(b"\x07junk", ("127.0.0.1", 9))
    transport.datagramReceived(b"\x01" + b"x" * 200, ("127.0.0.1", 9))
    node.peers.receive("STRANGER", Learn(node.applied_seqn + 1, NOOP))
    samples = scrape(metrics)
    assert value(samples, "doozer_peer_datagrams_received_total") == 2
    assert value(samples, "doozer_peer_datagrams_dropped_total", reason="bad_version") == 1
    assert value(samples, "doozer_peer_datagrams_dropped_total", reason="oversized") == 1
    assert value(samples, "doozer_peer_datagrams_dropped_total", reason="replayed") == 0
    assert value(samples, "doozer_peer_messages_dropped_total", reason="non_member_dropped") == 1
    transport.send("NOBODY", Learn(1, NOOP))
    assert value(scrape(metrics), "doozer_peer_datagrams_dropped_total", reason="no_address") == 1


def test_client_limits_are_shown_when_given() -> None:
    clock = Clock()
    limits = Limits(clock)
    metrics = NodeMetrics(single_node(clock), limits=limits)
    limits.counters["misdirected"] += 1
    samples = scrape(metrics)
    assert value(samples, "doozer_client_limit_events_total", event="misdirected") == 1
    assert ("doozer_client_connections", ()) in samples


def _cluster(seed: int = 1) -> NodeSim:
    sim = NodeSim(seed, n=3)
    sim.start()
    sim.run_for(2)
    return sim


def test_a_three_node_cluster_skips_installs_and_measures_round_trips() -> None:
    """Writes at N1 only: the other owners skip their instances; the two
    that joined installed N1's snapshot; N1 timed its ACCEPTs to each peer
    on the simulated network (0.2 to 3 ms a way)."""
    sim = _cluster()
    n1, n2, n3 = (sim.nodes[name] for name in ("N1", "N2", "N3"))
    for i in range(20):
        sim.write(n1, f"/x{i}")
    sim.run_for(1)
    s1 = scrape(NodeMetrics(n1.node))
    assert value(s1, "doozer_instances_decided_total", kind="skip") > 0
    assert value(s1, "doozer_snapshot_installs_total") == 0
    for peer in ("N2", "N3"):
        count = value(s1, "doozer_peer_round_trip_seconds_count", peer=peer)
        total = value(s1, "doozer_peer_round_trip_seconds_sum", peer=peer)
        assert count > 0 and 0.0004 * count <= total <= 0.2 * count, (peer, count, total)
    for joined in (n2, n3):
        assert value(scrape(NodeMetrics(joined.node)), "doozer_snapshot_installs_total") == 1


def test_a_dead_member_s_instances_are_revoked_to_no_ops() -> None:
    """N3 is killed while N1 writes: a survivor revokes N3's instances
    (PREPARE), and they are decided as no-ops everywhere."""
    sim = _cluster()
    n1, n2, n3 = (sim.nodes[name] for name in ("N1", "N2", "N3"))
    before = [scrape(NodeMetrics(n.node)) for n in (n1, n2)]
    sim.kill(n3)
    for i in range(40):
        sim.at(0.05 * i, sim.write, n1, f"/y{i}")
    sim.run_for(4)
    after = [scrape(NodeMetrics(n.node)) for n in (n1, n2)]
    revoked = sum(value(a, "doozer_revocations_total") - value(b, "doozer_revocations_total")
                  for a, b in zip(after, before))
    assert revoked > 0
    for a, b in zip(after, before):
        noop = "doozer_instances_decided_total"
        assert value(a, noop, kind="noop") > value(b, noop, kind="noop")


def test_two_nodes_in_one_process_have_separate_registries() -> None:
    """Each node's metrics are its own: a write at N1 moves N1's count
    only, and nothing goes to prometheus_client's global registry."""
    sim = _cluster(seed=2)
    m1, m2 = NodeMetrics(sim.nodes["N1"].node), NodeMetrics(sim.nodes["N2"].node)
    assert m1.registry is not m2.registry
    sim.write(sim.nodes["N1"], "/only-n1")
    sim.run_for(1)
    s1, s2 = scrape(m1), scrape(m2)
    assert value(s1, "doozer_writes_committed_total") == 1
    assert value(s2, "doozer_writes_committed_total") == 0
    assert value(s1, "doozer_node_info", id="N1", cluster="nodesim", version=_version()) == 1
    assert value(s2, "doozer_node_info", id="N2", cluster="nodesim", version=_version()) == 1
    global_names = {f.name for f in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("doozer_") for name in global_names)


def _version() -> str:
    from doozer import __version__

    return __version__


def test_a_node_in_no_cluster_scrapes_too() -> None:
    """Before it joins, every family is there, at 0, and it is not ready."""
    node = build_node(Config(pulse=0), Clock(), "LONELY", rng=random.Random(0))
    samples = scrape(NodeMetrics(node))
    assert value(samples, "doozer_ready") == 0
    assert value(samples, "doozer_instances_decided_total", kind="value") == 0
    assert ("doozer_instances_decided_total", (("kind", "skip"),)) in samples


def test_the_data_dir_s_fsync_histogram_log_and_snapshot_sizes(tmp_path: Any) -> None:
    """With a data dir: each batch written is one more fsync observation,
    the log grows by what is written, and the snapshot written at the
    start (genesis) has a size."""
    clock = Clock()
    node = durable_node(str(tmp_path), clock)
    settle(clock)
    metrics = NodeMetrics(node)
    found = families(metrics)
    for name, kind in DATA_DIR_METRICS.items():
        assert found[name].type == kind, name
    before = scrape(metrics)
    assert value(before, "doozer_snapshot_bytes") > 0
    assert value(before, "doozer_log_segments") == 1
    for i in range(5):
        node.set(f"/f{i}", b"v" * 1000)
        settle(clock, rounds=2)
    after = scrape(metrics)
    assert value(after, "doozer_fsync_seconds_count") > value(before, "doozer_fsync_seconds_count")
    assert value(after, "doozer_log_bytes") >= value(before, "doozer_log_bytes") + 5000
    assert value(after, "doozer_writes_committed_total") == 5
