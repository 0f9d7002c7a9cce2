"""What a node says about itself and its cluster: ``/v1/self``,
``/v1/cluster`` and the addresses of known nodes, all read from the store's
``/ctl`` records.

A mixin of :class:`doozer.node.Node`, kept apart so that the node module
holds the write and read paths only.
"""

from __future__ import annotations

from typing import Any, Optional

from doozer.errors import DoozerError


class ClusterInfo:
    """The node's view of the cluster, from ``/ctl/cal`` and ``/ctl/node``."""

    # Provided by Node.
    id: str
    addr: str
    cluster: str
    store: Any
    sequencer: Any
    clock: Any
    timeout: float
    member: bool
    writable: bool
    voting: bool

    def self_info(self) -> dict[str, Any]:
        """SPEC's ``/v1/self``."""
        return {
            "id": self.id,
            "addr": self.addr,
            "cluster": self.cluster,
            "member": self.member,
            "writable": self.writable,
            "voting": self.voting,
        }

    def _voters(self) -> tuple:
        """The voters of the next instance, as this node computes them."""
        seq = self.sequencer
        if seq is None:
            return ()
        return seq.members(seq.decided_seqn + 1) or ()

    def fault_tolerance(self) -> int:
        """How many more voters may fail with writes still committing: the
        voters of the next instance heard from within ``--timeout`` (this
        node included), minus their quorum; negative without a quorum."""
        voters = self._voters()
        if not voters:
            return -1
        now = self.clock.seconds()
        heard = self.sequencer.last_heard
        alive = sum(
            1
            for v in voters
            if v == self.id or now - heard.get(v, float("-inf")) <= self.timeout
        )
        return alive - (len(voters) // 2 + 1)

    def _node_field(self, node_id: str, name: str) -> Optional[str]:
        try:
            f = self.store.get(f"/ctl/node/{node_id}/{name}")
        except DoozerError:
            return None
        value = getattr(f, "value", None)
        return value.decode("utf-8", "replace") if value is not None else None

    def _node_info(self, node_id: str) -> dict[str, Any]:
        applied = self._node_field(node_id, "applied")
        if node_id == self.id:
            applied = str(self.store.rev)
        return {
            "id": node_id,
            "addr": self._node_field(node_id, "addr"),
            "applied": int(applied) if applied and applied.isdigit() else None,
        }

    def node_addresses(self) -> dict[str, str]:
        """Every known node's address, from ``/ctl/node/<id>/addr``."""
        try:
            known = self.store.getdir("/ctl/node")
        except DoozerError:
            return {}
        out = {}
        for node_id in known:
            addr = self._node_field(node_id, "addr")
            if addr:
                out[node_id] = addr
        return out

    def cluster_info(self) -> dict[str, Any]:
        """SPEC's ``/v1/cluster``: members by slot and every known node."""
        members = []
        voters = self._voters()
        for slot, member_id in self._slots():
            if member_id:
                info = self._node_info(member_id)
                info["slot"] = slot
                info["voting"] = member_id in voters
                members.append(info)
        try:
            known = self.store.getdir("/ctl/node")
        except DoozerError:
            known = []
        return {
            "cluster": self.cluster,
            "rev": self.store.rev,
            "members": members,
            "nodes": [self._node_info(n) for n in known],
            "fault_tolerance": self.fault_tolerance(),
        }

    def _slots(self) -> list[tuple[int, str]]:
        """Every CAL slot, ``(number, member id or "")``, by number."""
        return self.store.cal_slots()
