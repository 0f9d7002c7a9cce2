"""What a node says about itself and its cluster: ``/v1/self``,
``/v1/cluster`` and the addresses of known nodes, all read from the store's
``/ctl`` records.

A collaborator of :class:`doozer.node.node.Node`, which holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from doozer.errors import DoozerError

if TYPE_CHECKING:  # the node holds this collaborator; typing only
    from doozer.node.node import Node


class ClusterInfo:
    """The node's view of the cluster, from ``/ctl/cal`` and ``/ctl/node``.

    :param node: the node it speaks for (it holds this collaborator).
    """

    def __init__(self, node: "Node") -> None:
        self.node = node

    def self_info(self) -> dict[str, Any]:
        """SPEC's ``/v1/self``."""
        node = self.node
        return {
            "id": node.id,
            "addr": node.addr,
            "cluster": node.cluster,
            "member": node.member,
            "writable": node.writable,
            "voting": node.voting,
        }

    def voters(self) -> tuple[str, ...]:
        """The voters of the next instance, as this node computes them."""
        node = self.node
        seq = node.sequencer
        if seq is None:
            return ()
        return seq.members(seq.decided_seqn + 1) or ()

    def fault_tolerance(self) -> int:
        """How many more voters may fail with writes still committing: the
        voters of the next instance heard from within ``--timeout`` (this
        node included), minus their quorum; negative without a quorum."""
        node = self.node
        seq = node.sequencer
        voters = self.voters()
        if seq is None or not voters:
            return -1
        now = node.clock.seconds()
        heard = seq.last_heard
        alive = sum(
            1
            for v in voters
            if v == node.id or now - heard.get(v, float("-inf")) <= node.timeout
        )
        return alive - (len(voters) // 2 + 1)

    def node_field(self, node_id: str, name: str) -> Optional[str]:
        node = self.node
        try:
            f = node.store.get(f"/ctl/node/{node_id}/{name}")
        except DoozerError:
            return None
        value = getattr(f, "value", None)
        return value.decode("utf-8", "replace") if value is not None else None

    def _node_info(self, node_id: str) -> dict[str, Any]:
        node = self.node
        applied = self.node_field(node_id, "applied")
        if node_id == node.id:
            applied = str(node.store.rev)
        return {
            "id": node_id,
            "addr": self.node_field(node_id, "addr"),
            "applied": int(applied) if applied and applied.isdigit() else None,
        }

    def node_addresses(self) -> dict[str, str]:
        """Every known node's address, from ``/ctl/node/<id>/addr``."""
        node = self.node
        try:
            known = node.store.getdir("/ctl/node")
        except DoozerError:
            return {}
        out = {}
        for node_id in known:
            addr = self.node_field(node_id, "addr")
            if addr:
                out[node_id] = addr
        return out

    def cluster_info(self) -> dict[str, Any]:
        """SPEC's ``/v1/cluster``: members by slot and every known node."""
        node = self.node
        members = []
        voters = self.voters()
        for slot, member_id in self.slots():
            if member_id:
                info = self._node_info(member_id)
                info["slot"] = slot
                info["voting"] = member_id in voters
                members.append(info)
        try:
            known = node.store.getdir("/ctl/node")
        except DoozerError:
            known = []
        return {
            "cluster": node.cluster,
            "rev": node.store.rev,
            "members": members,
            "nodes": [self._node_info(n) for n in known],
            "fault_tolerance": self.fault_tolerance(),
        }

    def slots(self) -> list[tuple[int, str]]:
        """Every CAL slot, ``(number, member id or "")``, by number."""
        node = self.node
        return node.store.cal_slots()
