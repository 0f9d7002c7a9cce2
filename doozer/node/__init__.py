"""One node: the client operations, the replica, membership, discovery.

- :mod:`doozer.node.node`: :class:`Node`, the one implementation of every
  client operation, and :func:`build_node`
- :mod:`doozer.node.peers`: peers' datagrams, screened before consensus
- :mod:`doozer.node.replica`: the store kept in step with the consensus log
- :mod:`doozer.node.membership`: pulses, claims, removals of silent members
- :mod:`doozer.node.info`: what a node says of itself and its cluster
- :mod:`doozer.node.health`: whether it is live and ready (``/livez``, ``/readyz``)
- :mod:`doozer.node.discovery`: finding the cluster at start-up (``--peers``)
- :mod:`doozer.node.fetcher`: copying a snapshot when left behind
- :mod:`doozer.node.snapshot`: the snapshot a node copies from a peer
- :mod:`doozer.node.admission`: bounds on pending writes, the store quota
- :mod:`doozer.node.datadir`: the data dir (``--data-dir``)
- :mod:`doozer.node.durability`: the node's side of it (records, snapshots, restart)
"""

from doozer.node.node import ITEM_LIFETIME, WRITE_TIMEOUT, Node, build_node

__all__ = ["ITEM_LIFETIME", "WRITE_TIMEOUT", "Node", "build_node"]
