"""The node's side of its data dir (``--data-dir``, the durable mode).

What CONSENSUS.md §D asks of a node, between its sequencer and its
:class:`~doozer.node.datadir.DataDir`: the identity and the state it starts
from are on disk before a new cluster's sequencer exists; a copied
snapshot is on disk before the floor record that refers to it (D7); each
pump's records go to the writer, and the messages held for them are
released once they are fsynced; snapshots of the store are saved now and
then so that older records and segments may go; a restart resumes from the
newest snapshot with the acceptor state the records hold; and a write that
fails (ENOSPC, EIO) stops the node, since what the rules need on disk may
not be there.

A collaborator of :class:`doozer.node.node.Node`, which holds it only in
durable mode (memory-only nodes have none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from doozer.consensus.durable import Durability, Recovered
from doozer.consensus.sequencer import Sequencer
from doozer.node.datadir import SNAPSHOT_BYTES, DataDir
from doozer.node.snapshot import Snapshot
from doozer.storage.errors import StorageFailed
from doozer.store import snapshot as store_snapshot

if TYPE_CHECKING:  # the node holds this collaborator; typing only
    from doozer.node.node import Node

#: Bytes of records not yet fsynced above which the node takes no more
#: peers' datagrams (:attr:`NodeStorage.backlogged`).
MAX_UNSYNCED = 64 << 20
#: Messages held for unsynced records above which it does the same.
MAX_HELD = 65_536
#: Bytes counted per record besides its value.
RECORD_OVERHEAD = 64


class NodeStorage:
    """The data dir glue of one node.

    :param node: the node whose state it keeps on disk (it holds this
        collaborator).
    :param data: the data dir.
    :param snapshot_every: instances applied between two snapshots
        written to the data dir.
    """

    def __init__(self, node: "Node", data: DataDir, snapshot_every: int) -> None:
        self.node = node
        self.data = data
        self.snapshot_every = snapshot_every
        data.on_failure = self.storage_failed
        #: bytes (about) of records handed to the writer and not yet fsynced
        self.unsynced = 0

    @property
    def incarnation(self) -> int:
        """This process's incarnation (D5, D6): bumped at every restart."""
        return self.data.incarnation

    def durability(self, recovered: Optional[Recovered] = None) -> Durability:
        """The durable mode of a new sequencer of this incarnation."""
        return Durability(self.data.incarnation, recovered)

    # ------------------------------------------------------------------
    # the life cycle

    def save_genesis(self, cluster_id: str) -> None:
        """A new cluster: its identity and the state it starts from
        (instance 0: the empty store, this node the only member) are on
        disk before the sequencer exists."""
        node = self.node
        members = {s: [node.id] for s in range(1, node.alpha + 1)}
        self.data.attach(cluster_id, node.id, Snapshot(
            cluster=node.cluster, cluster_id=cluster_id, alpha=node.alpha, seqn=0,
            members=members, store=store_snapshot.dump(node.store)))
        self.data.snapshot_cal = node.store.cal()

    def save_copy(self, snap: Snapshot) -> None:
        """A snapshot copied from a peer, before it is installed: D7, it is
        on disk before the floor record that refers to it (blocking, but
        only at a copy from a peer)."""
        node = self.node
        if snap.seqn <= node.store.seqn:
            return
        if node.replica is None:
            self.data.attach(snap.cluster_id, node.id, snap)
        else:
            self.data.save_snapshot_now(snap)

    def installed(self) -> None:
        """A snapshot was installed: the CAL it holds is the one on disk."""
        self.data.snapshot_cal = self.node.store.cal()

    def resume(self) -> None:
        """Start again from the data dir, under the same id: from its newest
        snapshot, with the acceptor state its records hold (CONSENSUS §D),
        then catch up from the peers as any laggard does."""
        data = self.data
        node = self.node
        assert data.snapshot is not None and data.recovered is not None
        snap = data.snapshot
        node._start_from(snap, data.recovered)
        assert node.replica is not None
        # The decisions the log holds after the snapshot are applied now,
        # not decided again (data dir, "the decided log").
        data.replay_decided(node.replica, node.id, node.clock.seconds())
        node.lease_timers.sync()
        data.snapshot_cal = node.store.cal()
        node.log.info(
            "doozer node {id} restarts in cluster {cluster!r} (incarnation {inc}) from its data "
            "dir at rev {rev} (seqn {seqn}); catching up from its peers",
            id=node.id,
            cluster=node.cluster,
            inc=data.incarnation,
            rev=node.store.rev,
            seqn=node.store.seqn,
        )
        node._become_running()
        node.schedule_pump()

    @property
    def backlogged(self) -> bool:
        """Whether the disk is so far behind that the node must take no more
        work that makes records or held messages: more than
        :data:`MAX_UNSYNCED` bytes of records not yet fsynced, or more than
        :data:`MAX_HELD` messages held for them (a stalled fsync). Peers'
        datagrams are then dropped (:class:`doozer.node.peers.Peers`) and
        sent again by them later; clients' writes are bounded by admission
        already. Without this bound both would grow for as long as the
        disk does not answer."""
        if self.unsynced > MAX_UNSYNCED:
            return True
        seq = self.node.sequencer
        return seq is not None and seq.durable is not None and len(seq.durable.held) > MAX_HELD

    # ------------------------------------------------------------------
    # every pump

    def write_records(self, sequencer: Sequencer) -> None:
        """Hand this turn's records to the writer; the messages held for
        them are released once they are fsynced."""
        data = self.data
        node = self.node
        token, records = sequencer.take_records()
        if records:
            size = sum(len(getattr(r, "value", b"")) + RECORD_OVERHEAD for r in records)
            self.unsynced += size
            d = data.append(records)
            d.addCallbacks(self._synced, _ignore, callbackArgs=(token, size))
        durable = sequencer.durable
        assert durable is not None
        if durable.collectable > data.collected:
            data.collect(durable.collectable)
        applied = node.applied_seqn
        if not data.snapshotting and applied > data.snapshot_seqn and (
            applied - data.snapshot_seqn >= self.snapshot_every
            or data.appended >= SNAPSHOT_BYTES
            # A CAL change is saved at once: a node restarted from a
            # snapshot that lacks its peers (the genesis one, or one from
            # before its own claim) knows no member to copy state from.
            or node.store.cal() != data.snapshot_cal
        ):
            self._save_snapshot()

    def _synced(self, _: object, token: int, size: int) -> None:
        self.unsynced -= size
        node = self.node
        if node.failed is not None or node.replica is None:
            return
        node.replica.sequencer.synced(token, node.clock.seconds())
        node.schedule_pump()

    def _save_snapshot(self) -> None:
        """Write a snapshot of the store to the data dir, then raise the
        floor there (D7), so that older records and segments may go."""
        data = self.data
        node = self.node
        assert node.replica is not None
        try:
            snap = node.replica.snapshot()
        except LookupError:
            return
        if snap.seqn <= data.snapshot_seqn:
            return
        cal = node.store.cal()

        def saved(_: object) -> None:
            if snap.seqn > data.snapshot_seqn:
                data.snapshot_seqn = snap.seqn
                data.snapshot_cal = cal
            if node.failed is None and node.replica is not None:
                node.replica.sequencer.raise_floor(snap.seqn)
                node.schedule_pump()

        def failed(f: Any) -> None:
            self.storage_failed(StorageFailed(data.directory, f.value))

        data.save_snapshot(snap).addCallbacks(saved, failed)

    def storage_failed(self, error: StorageFailed) -> None:
        """Writing the data dir failed (ENOSPC, EIO): what the rules need on
        disk may not be, so stop voting at once and exit (SPEC §8)."""
        node = self.node
        if node.failed is not None:
            return
        node._fail(str(error), "it no longer votes or serves; free space or fix the disk, then "
                  "restart it with the same --data-dir")


def _ignore(_: object) -> None:
    """A failed append: the writer's on_failure hook has stopped the node."""
