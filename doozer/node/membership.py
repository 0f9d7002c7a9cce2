"""Membership chores of a node: pulses, claiming a free CAL slot, saying
"I am back" after being cut off, and removing members silent for
``--timeout``.

A collaborator of :class:`doozer.node.node.Node`, which holds it.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Optional

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from doozer import __version__
from doozer.store import Dir, File, Outcome, Store, mutation
from doozer.errors import DoozerError

if TYPE_CHECKING:  # the node holds this collaborator; typing only
    from doozer.node.node import Node

#: Seconds between two rounds of membership chores.
CHORES_INTERVAL = 0.5
#: A peer's word that a member is silent counts this many ping periods.
CONFIRM_PINGS = 3


class Membership:
    """The CAL side of a node (see CONSENSUS.md, "Liveness and membership").

    :param node: the node it keeps a member (it holds this collaborator).
    """

    def __init__(self, node: "Node") -> None:
        self.node = node
        self._pulse_call: Optional[IDelayedCall] = None
        self._chores_call: Optional[IDelayedCall] = None
        self._pulsed_rev = -1
        #: when the chores last ran, and since when this node has been
        #: running without a stall of its own (SIGSTOP, starved CPU).
        self._chores_at: Optional[float] = None
        self._awake_since = 0.0
        self._claiming = False
        self._said_no_slot = False  # logged that every slot is taken
        self._recording = False
        self._removing: set[tuple[int, int]] = set()  # (slot, rev) of removals in flight
        self._forgetting: dict[str, float] = {}  # node id -> when its deletes were proposed
        self._announced_at = float("-inf")  # when this node last said it is back
        self._cut_off = False  # heard no other member for timeout/2
        self._record: Optional[list[tuple[str, bytes]]] = None

    def self_record(self) -> list[tuple[str, bytes]]:
        """This node's ``/ctl/node/<id>`` files (made once: checked every
        round of chores)."""
        if self._record is None:
            node = self.node
            base = f"/ctl/node/{node.id}"
            self._record = [
                (f"{base}/addr", node.addr.encode()),
                (f"{base}/hostname", socket.gethostname().encode()),
                (f"{base}/version", __version__.encode()),
                (f"{base}/writable", b"true"),
            ]
        return self._record

    def stop(self) -> None:
        """Cancel the pulse and the chores."""
        for call in (self._pulse_call, self._chores_call):
            if call is not None and call.active():
                call.cancel()
        self._pulse_call = self._chores_call = None

    def schedule_pulse(self) -> None:
        node = self.node
        if node.pulse > 0 and node.running:
            self._pulse_call = node.clock.callLater(node.pulse, self._on_pulse)

    def _on_pulse(self) -> None:
        node = self.node
        self._pulse_call = None
        # Record progress only when something besides the members' own
        # pulses happened since our last one; otherwise an idle cluster would
        # keep pulsing in answer to each other's pulses forever.
        members = len(node.store.cal())
        if node.member and node.store.rev > self._pulsed_rev + members:
            self.write_applied()
        self.schedule_pulse()

    def write_applied(self) -> "defer.Deferred[Optional[Outcome]]":
        """Record this node's applied rev in ``/ctl/node/<id>/applied``."""
        node = self.node
        self._pulsed_rev = node.store.rev
        return node.writes.internal(
            mutation.SET,
            f"/ctl/node/{node.id}/applied",
            str(node.store.rev).encode(),
        )

    def _say_back(self, now: float) -> None:
        """Tell the cluster this node is alive again, through the log.

        A removal proposed while this node was silent is conditioned on the
        rev of its applied record (:meth:`_remove_silent_members`); writing
        the record makes such a removal fail when it is decided only after
        this write (revoked, then proposed again after the heal), instead of
        removing a member that is back and opening a voting gap.

        Said when a peer's PING names this node among its suspects, when
        this node heard no other member for ``timeout/2``, and after this
        node's own stall (SIGSTOP); at most once per ``timeout/4``.
        """
        node = self.node
        if now - self._announced_at < node.timeout / 4:
            return
        self._announced_at = now
        node.log.info("this node was cut off or suspected: recording that it is back")
        self.write_applied()

    def schedule_chores(self) -> None:
        node = self.node
        if node.running:
            self._chores_call = node.clock.callLater(CHORES_INTERVAL, self.chores)

    def chores(self) -> None:
        node = self.node
        self._chores_call = None
        for callback in node.on_chores:
            callback()
        self.keep_own_record()
        if node.member:
            self._remove_silent_members()
            self._forget_gone_nodes()
            self._check_back()
        else:
            node.require_sequencer().suspects = ()  # stale once out of the CAL
            if not self._claiming and not node.leaving.left:
                self._claim_free_slot()
        self.schedule_chores()

    def keep_own_record(self) -> None:
        """Write this node's ``/ctl/node/<id>`` record again when it is
        missing or stale: members delete the records of nodes silent for
        ``--timeout`` (:meth:`_forget_gone_nodes`), and a node cut off that
        long comes back to find its own gone. Peers, new nodes above all,
        learn where to send to it from that record."""
        node = self.node
        if self._recording or node.sequencer is None:
            return
        missing = [
            path
            for path, value in self.self_record()
            # the hostname is informational; it is rewritten with the rest
            if not path.endswith("/hostname")
            and node.info.node_field(node.id, path.rsplit("/", 1)[1]) != value.decode()
        ]
        if not missing:
            return
        node.log.info(
            "this node's record {paths} is missing or stale: writing it again",
            paths=", ".join(missing),
        )
        self.write_own_record()

    def write_own_record(self) -> None:
        node = self.node
        self._recording = True
        writes = [node.writes.internal(mutation.SET, p, v) for p, v in self.self_record()]
        writes[-1].addBoth(lambda _: setattr(self, "_recording", False))

    def _check_back(self) -> None:
        """Say "I am back" (:meth:`_say_back`) when this node was cut off
        from the other members, or a peer suspects it."""
        node = self.node
        now = node.clock.seconds()
        seq = node.require_sequencer()
        others = [h for _, h in node.info.slots() if h and h != node.id]
        if not others:
            return
        heard = [m for m in others if now - seq.last_heard.get(m, node._running_since) <= node.timeout / 2]
        if not heard:
            self._cut_off = True
            return
        fresh = CONFIRM_PINGS * seq.ping_interval
        suspected = any(
            node.id in said and now - at <= fresh for said, at in seq.peer_suspects.values()
        )
        stalled = self._awake_since > max(self._announced_at, node._running_since)
        if self._cut_off or suspected or stalled:
            self._cut_off = False
            self._say_back(now)

    def _claim_free_slot(self) -> None:
        node = self.node
        for slot, holder in node.info.slots():
            if holder == "":
                slot_rev = _file_rev(node.store, f"/ctl/cal/{slot}")
                self._claiming = True
                node.log.info("claiming free CAL slot {slot}", slot=slot)
                d = node.writes.internal(mutation.SET, f"/ctl/cal/{slot}", node.id.encode(), slot_rev)
                d.addBoth(self._claim_done)
                return
        if not self._said_no_slot:
            self._said_no_slot = True
            node.log.info(
                "no free CAL slot: serving reads and watches as a non-member; "
                "to make this node a member, add an empty slot with "
                "`echo -n | doozer add /ctl/cal/N`",
            )

    def _claim_done(self, result: object) -> None:
        node = self.node
        self._claiming = False
        if node.member:
            self._said_no_slot = False
            node.log.info(
                "doozer node {id} is now a member of cluster {cluster!r}",
                id=node.id,
                cluster=node.cluster,
            )

    def _remove_silent_members(self) -> None:
        node = self.node
        now = node.clock.seconds()
        last, self._chores_at = self._chores_at, now
        if last is not None and now - last > CHORES_INTERVAL + node.timeout / 2:
            # This node itself was stopped (SIGSTOP) or starved: the others
            # only look silent. Give them a full timeout from now.
            self._awake_since = now
        since = max(node._running_since, self._awake_since)
        seq = node.require_sequencer()
        heard = seq.last_heard
        slots = node.info.slots()
        cal = [h for _, h in slots if h]

        def is_silent(holder: str) -> bool:
            return holder != node.id and now - max(heard.get(holder, float("-inf")), since) > node.timeout

        suspects = tuple(h for h in cal if is_silent(h))
        seq.suspects = suspects  # sent in our PINGs
        fresh = CONFIRM_PINGS * seq.ping_interval
        told = seq.peer_suspects

        def confirms(member: str, holder: str) -> bool:
            """``member`` finds ``holder`` silent too, and said so lately (a
            PING that recent also means ``member`` itself was heard)."""
            if member == node.id:
                return True
            said = told.get(member)
            return said is not None and now - said[1] <= fresh and holder in said[0]

        for slot, holder in slots:
            if not holder or holder == node.id:
                continue
            slot_rev = _file_rev(node.store, f"/ctl/cal/{slot}")
            if holder not in suspects or (slot, slot_rev) in self._removing:
                continue
            # A quorum of the members that stay must find it silent too, and
            # have said so in the last few pings. Silence seen from here
            # alone may be a one-way loss to this node; and a CAL whose
            # quorum needs a member that is in fact dead (a stale "alive"
            # from here) would stop the cluster for good: nobody could
            # remove the dead one or add anyone.
            rest = [h for h in cal if h != holder]
            if sum(1 for h in rest if confirms(h, holder)) < len(rest) // 2 + 1:
                continue
            node.log.warn(
                "member {holder} silent for {silent:.0f} s: emptying CAL slot {slot}",
                holder=holder,
                silent=now - max(heard.get(holder, float("-inf")), since),
                slot=slot,
            )
            key = (slot, slot_rev)
            self._removing.add(key)
            # Judged when applied, not only now: the member's applied record
            # must not have changed since (it writes it when it is back), so
            # a removal decided late, after the member returned, fails.
            record = f"/ctl/node/{holder}/applied"
            try:
                record_rev = _file_rev(node.store, record)
            except DoozerError:
                record_rev = 0
            d = node.writes.internal(
                mutation.SET, f"/ctl/cal/{slot}", b"", slot_rev, compare=((record, record_rev),)
            )
            # Only while in flight: a removal refused (say FORBIDDEN, racing
            # another) or not decided in time is proposed again at a later
            # round if the member is still silent. Kept for good, it would
            # leave a dead member in the CAL forever once every live member
            # had failed once at that slot's rev.
            d.addBoth(lambda _, k: self._removing.discard(k), key)

    def _forget_gone_nodes(self) -> None:
        """Delete the ``/ctl/node/<id>`` records of nodes that are neither in
        the CAL nor heard from for ``--timeout`` (a restarted process comes
        back with a new id, so without this the records grow forever).

        Only the member in the lowest slot does it, so the members do not all
        propose the same deletes; each is conditioned on the file's rev.
        """
        node = self.node
        cal = node.store.cal()
        if not cal or cal[0] != node.id:
            return
        now = node.clock.seconds()
        since = max(node._running_since, self._awake_since)
        heard = node.require_sequencer().last_heard
        try:
            known = node.store.getdir("/ctl/node")
        except DoozerError:
            return
        members = set(cal)
        # Deletes proposed lately: not again while they may still commit.
        # Later a node that came back and went again is forgotten again.
        forgetting = self._forgetting
        for node_id in [n for n, t in forgetting.items() if now - t > node.timeout]:
            del forgetting[node_id]
        for node_id in known:
            if node_id == node.id or node_id in members or node_id in forgetting:
                continue
            if now - max(heard.get(node_id, float("-inf")), since) <= node.timeout:
                continue
            forgetting[node_id] = now
            node.log.info("forgetting node {id}: not a member, silent", id=node_id)
            base = f"/ctl/node/{node_id}"
            for name in node.store.getdir(base):
                f = node.store.get(f"{base}/{name}")
                # Only files: a peer may write below its own record, and a
                # directory there (no rev) once stopped the chores for good.
                if isinstance(f, File):
                    node.writes.internal(mutation.DEL, f"{base}/{name}", b"", f.rev)


def _file_rev(store: Store, path: str) -> int:
    """The rev of the file ``path``.

    :raises DoozerError: ``NOENT``, or ``ISDIR`` when it is a directory.
    """
    f = store.get(path)
    if isinstance(f, Dir):
        raise DoozerError("ISDIR", f"{path} is a directory")
    return f.rev
