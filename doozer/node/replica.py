"""One node's copy of the cluster: the store kept in step with the log.

The :class:`Replica` is the part of a node that the simulations run as it
is: it applies decided instances to the store in seqn order, tells the
sequencer the membership each one makes (``M(s + alpha)`` is the CAL the
store holds after instance ``s``, in the store's own CAL order), makes
snapshots and installs them. Writers, timers and chores are the node's.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

from doozer.consensus.sequencer import Sequencer
from doozer.node.snapshot import Snapshot
from doozer.store import Outcome, Store
from doozer.store import snapshot as store_snapshot


class Replica:
    """A store and the sequencer whose decisions it applies.

    :param store: the store (replaced in place by :meth:`install`).
    :param sequencer: the consensus core.
    :param cluster: the cluster's name.
    :param cluster_id: the cluster's id (random, made at genesis).
    """

    def __init__(self, store: Store, sequencer: Sequencer, cluster: str, cluster_id: str) -> None:
        self.store = store
        self.sequencer = sequencer
        self.cluster = cluster
        self.cluster_id = cluster_id

    @classmethod
    def from_snapshot(
        cls, snap: Snapshot, store: Store, sequencer: Callable[[int, int], Sequencer]
    ) -> "Replica":
        """A new node's replica, made from a peer's snapshot.

        :param store: the node's (empty) store: it takes on the snapshot's
            contents in place, so that reads already waiting on it stay.
        :param sequencer: makes the sequencer from ``(alpha, first_seqn)``.
        :raises ValueError: when ``snap`` does not hold a store of its seqn.
        """
        loaded = store_snapshot.load(snap.store, hist=store.hist)
        if loaded.seqn != snap.seqn:
            raise ValueError(f"snapshot of seqn {snap.seqn} holds a store of seqn {loaded.seqn}")
        store.adopt(loaded)
        replica = cls(store, sequencer(snap.alpha, snap.seqn + 1), snap.cluster, snap.cluster_id)
        replica.sequencer.install(snap.seqn, snap.members)
        return replica

    @property
    def applied_seqn(self) -> int:
        """The last instance applied to the store."""
        return self.store.seqn

    def apply_decided(self) -> Iterator[tuple[int, list[bytes], list[Outcome]]]:
        """Apply every decided instance the sequencer hands out, in order.

        Yields ``(seqn, items, outcomes)`` as each is applied, so that the
        caller answers writers as it goes. An exception from the store (a
        bug) propagates; the caller must then stop this replica for good:
        the instances after it were handed out and will never be applied
        here, and a store that skipped one would differ from its peers'.
        """
        sequencer = self.sequencer
        store = self.store
        alpha = sequencer.alpha
        for seqn, items in sequencer.take_decided():
            outcomes = store.apply(items, seqn)
            sequencer.set_members(seqn + alpha, store.cal())
            yield seqn, items, outcomes

    def snapshot(self) -> Snapshot:
        """The store at the current instance boundary, with ``M(s)`` for
        the α instances after it."""
        seqn = self.store.seqn
        return Snapshot(
            cluster=self.cluster,
            cluster_id=self.cluster_id,
            alpha=self.sequencer.alpha,
            seqn=seqn,
            members=self.sequencer.members_after(seqn),
            store=store_snapshot.dump(self.store),
        )

    def install(self, snap: Snapshot) -> Optional[list[bytes]]:
        """Take on ``snap`` when it is ahead of this replica.

        :returns: None when it is not ahead (nothing changed); else the
            items this node had proposed or forwarded that the snapshot
            settled (see :meth:`Sequencer.install`), to answer their writers.
        :raises ValueError: a snapshot of another cluster (name or id).
        """
        if snap.cluster != self.cluster or snap.cluster_id != self.cluster_id:
            raise ValueError(
                f"snapshot of cluster {snap.cluster!r} ({snap.cluster_id}), "
                f"not {self.cluster!r} ({self.cluster_id})"
            )
        if snap.alpha != self.sequencer.alpha:
            raise ValueError(f"snapshot with alpha {snap.alpha}, not {self.sequencer.alpha}")
        if snap.seqn <= self.store.seqn:
            return None
        store = store_snapshot.load(snap.store, hist=self.store.hist)
        if store.seqn != snap.seqn:
            raise ValueError(f"snapshot of seqn {snap.seqn} holds a store of seqn {store.seqn}")
        self.store.adopt(store)
        return self.sequencer.install(snap.seqn, snap.members)
