"""Node snapshots: what a joining or lagging node copies from a peer, and
its installing one.

A snapshot is the store at some rev **plus the seqn whose application
produced exactly that store**, ``M(s)`` for the α instances after it, the
cluster's id and α (CONSENSUS.md, "Liveness and membership"). It travels
over HTTP on the peer's client port (:mod:`doozer.server.http.peerhttp`),
authenticated with the cluster key (:mod:`doozer.server.auth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import msgpack

from doozer.addr import Addr

if TYPE_CHECKING:  # the node uses snapshots; typing only
    from doozer.node.node import Node


@dataclass
class Snapshot:
    """A node's state at an instance boundary."""

    cluster: str
    cluster_id: str
    alpha: int
    seqn: int
    members: dict[int, list[str]]
    store: bytes

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "v": 1,
                "cluster": self.cluster,
                "cluster_id": self.cluster_id,
                "alpha": self.alpha,
                "seqn": self.seqn,
                "members": {str(s): list(m) for s, m in self.members.items()},
                "store": self.store,
            },
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> "Snapshot":
        """:raises ValueError: for anything that is not a snapshot."""
        try:
            doc = msgpack.unpackb(data, raw=False)
            return cls(
                cluster=str(doc["cluster"]),
                cluster_id=str(doc["cluster_id"]),
                alpha=int(doc["alpha"]),
                seqn=int(doc["seqn"]),
                members={int(s): [str(i) for i in m] for s, m in doc["members"].items()},
                store=bytes(doc["store"]),
            )
        except Exception as e:
            raise ValueError(f"not a node snapshot: {e}") from None


def snapshot_sources(node: "Node", address_of: Callable[[str], Optional[Addr]]) -> list[Addr]:
    """Where a node left behind the log can copy a snapshot: the other
    members of its CAL, at the address its transport knows for each (from
    their ``/ctl/node`` record, else where their datagrams came from: the
    record of a node may have been deleted while it was away).

    Members heard from lately come first, alone: a stopped (SIGSTOPped)
    member still accepts the connection and keeps the fetch waiting for its
    whole timeout. Only when none was heard lately are the others tried.
    """
    seq = node.sequencer
    now = node.clock.seconds()
    lately: list[Addr] = []
    others: list[Addr] = []
    for member in node.store.cal():
        if member != node.id:
            addr = address_of(member)
            if addr is not None:
                fresh = seq is not None and seq.heard_lately(member, now)
                (lately if fresh else others).append(addr)
    return lately or others


def install(node: "Node", snap: Snapshot) -> bool:
    """Have ``node`` adopt a peer's snapshot: a new node attaching, or a
    laggard catching up (:meth:`Node.install <doozer.node.node.Node.install>`).

    :param snap: a snapshot of the node's cluster.
    :returns: whether it was installed (one not ahead of the node is not).
    :raises ValueError: a snapshot of another cluster (name, or id once
        the node is in a cluster) or a malformed one.
    """
    if snap.cluster != node.cluster:
        raise ValueError(f"snapshot of cluster {snap.cluster!r}, not {node.cluster!r}")
    if node.failed is not None:
        return False
    if node.cluster_id is not None and snap.cluster_id != node.cluster_id:
        raise ValueError(f"snapshot of cluster id {snap.cluster_id}, not {node.cluster_id}")
    if node.storage is not None:
        node.storage.save_copy(snap)
    if node.replica is None:
        node._start_from(snap)
        settled: list[bytes] = []
    else:
        given_up = node.replica.install(snap)
        if given_up is None:
            return False
        settled = given_up
    node.writes.settle_from_store(settled)
    node.lease_timers.sync()  # L3: every lease timed again from now
    node.snapshot_installs += 1
    if node.storage is not None:
        node.storage.installed()
    node.log.info(
        "doozer node {id} copied cluster {cluster!r} at rev {rev} (seqn {seqn})",
        id=node.id,
        cluster=node.cluster,
        rev=node.store.rev,
        seqn=snap.seqn,
    )
    if not node.running:
        node.membership.write_own_record()
        node._become_running()
    node.schedule_pump()
    return True
