"""Membership chores of a node: pulses, claiming a free CAL slot, saying
"I am back" after being cut off, and removing members silent for
``--timeout``.

A mixin of :class:`doozer.node.Node`, kept apart so that the node module
holds the write and read paths only.
"""

from __future__ import annotations

from typing import Any

from doozer import mutation
from doozer.errors import DoozerError

#: Seconds between two rounds of membership chores.
CHORES_INTERVAL = 0.5
#: A peer's word that a member is silent counts this many ping periods.
CONFIRM_PINGS = 3


class Membership:
    """The CAL side of a node (see CONSENSUS.md, "Liveness and membership")."""

    # Provided by Node.
    clock: Any
    store: Any
    sequencer: Any
    log: Any

    # ------------------------------------------------------------------
    # pulse

    def _schedule_pulse(self) -> None:
        if self.pulse > 0 and self.running:
            self._pulse_call = self.clock.callLater(self.pulse, self._on_pulse)

    def _on_pulse(self) -> None:
        self._pulse_call = None
        # Record progress only when something besides the members' own
        # pulses happened since our last one; otherwise an idle cluster would
        # keep pulsing in answer to each other's pulses forever.
        members = len(self.store.cal())
        if self.member and self.store.rev > self._pulsed_rev + members:
            self._write_applied()
        self._schedule_pulse()

    def _write_applied(self) -> Any:
        """Record this node's applied rev in ``/ctl/node/<id>/applied``."""
        self._pulsed_rev = self.store.rev
        return self._internal_write(
            mutation.SET,
            f"/ctl/node/{self.id}/applied",
            str(self.store.rev).encode(),
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
        if now - self._announced_at < self.timeout / 4:
            return
        self._announced_at = now
        self.log.info("this node was cut off or suspected: recording that it is back")
        self._write_applied()

    # ------------------------------------------------------------------
    # membership chores: claiming a free slot, removing silent members

    def _schedule_chores(self) -> None:
        if self.running:
            self._chores_call = self.clock.callLater(CHORES_INTERVAL, self._chores)

    def _chores(self) -> None:
        self._chores_call = None
        for callback in self.on_chores:
            callback()
        self._keep_own_record()
        if self.member:
            self._remove_silent_members()
            self._forget_gone_nodes()
            self._check_back()
        else:
            self.sequencer.suspects = ()  # stale once out of the CAL
            if not self._claiming:
                self._claim_free_slot()
        self._schedule_chores()

    def _keep_own_record(self) -> None:
        """Write this node's ``/ctl/node/<id>`` record again when it is
        missing or stale: members delete the records of nodes silent for
        ``--timeout`` (:meth:`_forget_gone_nodes`), and a node cut off that
        long comes back to find its own gone. Peers, new nodes above all,
        learn where to send to it from that record."""
        if self._recording or self.sequencer is None:
            return
        missing = [
            path
            for path, value in self._self_record()
            # the hostname is informational; it is rewritten with the rest
            if not path.endswith("/hostname")
            and self._node_field(self.id, path.rsplit("/", 1)[1]) != value.decode()
        ]
        if not missing:
            return
        self.log.info(
            "this node's record {paths} is missing or stale: writing it again",
            paths=", ".join(missing),
        )
        self._write_own_record()

    def _write_own_record(self) -> None:
        self._recording = True
        writes = [self._internal_write(mutation.SET, p, v) for p, v in self._self_record()]
        writes[-1].addBoth(lambda _: setattr(self, "_recording", False))

    def _check_back(self) -> None:
        """Say "I am back" (:meth:`_say_back`) when this node was cut off
        from the other members, or a peer suspects it."""
        now = self.clock.seconds()
        seq = self.sequencer
        others = [h for _, h in self._slots() if h and h != self.id]
        if not others:
            return
        heard = [m for m in others if now - seq.last_heard.get(m, self._running_since) <= self.timeout / 2]
        if not heard:
            self._cut_off = True
            return
        fresh = CONFIRM_PINGS * seq.ping_interval
        suspected = any(
            self.id in said and now - at <= fresh for said, at in seq.peer_suspects.values()
        )
        stalled = self._awake_since > max(self._announced_at, self._running_since)
        if self._cut_off or suspected or stalled:
            self._cut_off = False
            self._say_back(now)

    def _claim_free_slot(self) -> None:
        for slot, holder in self._slots():
            if holder == "":
                slot_rev = self.store.get(f"/ctl/cal/{slot}").rev  # type: ignore[union-attr]
                self._claiming = True
                self.log.info("claiming free CAL slot {slot}", slot=slot)
                d = self._internal_write(mutation.SET, f"/ctl/cal/{slot}", self.id.encode(), slot_rev)
                d.addBoth(self._claim_done)
                return

    def _claim_done(self, result: Any) -> None:
        self._claiming = False
        if self.member:
            self.log.info(
                "doozer node {id} is now a member of cluster {cluster!r}",
                id=self.id,
                cluster=self.cluster,
            )

    def _remove_silent_members(self) -> None:
        now = self.clock.seconds()
        last, self._chores_at = self._chores_at, now
        if last is not None and now - last > CHORES_INTERVAL + self.timeout / 2:
            # This node itself was stopped (SIGSTOP) or starved: the others
            # only look silent. Give them a full timeout from now.
            self._awake_since = now
        since = max(self._running_since, self._awake_since)
        heard = self.sequencer.last_heard
        slots = self._slots()
        cal = [h for _, h in slots if h]

        def is_silent(holder: str) -> bool:
            return holder != self.id and now - max(heard.get(holder, float("-inf")), since) > self.timeout

        suspects = tuple(h for h in cal if is_silent(h))
        self.sequencer.suspects = suspects  # sent in our PINGs
        fresh = CONFIRM_PINGS * self.sequencer.ping_interval
        told = self.sequencer.peer_suspects

        def confirms(member: str, holder: str) -> bool:
            """``member`` finds ``holder`` silent too, and said so lately (a
            PING that recent also means ``member`` itself was heard)."""
            if member == self.id:
                return True
            said = told.get(member)
            return said is not None and now - said[1] <= fresh and holder in said[0]

        for slot, holder in slots:
            if not holder or holder == self.id:
                continue
            slot_rev = self.store.get(f"/ctl/cal/{slot}").rev  # type: ignore[union-attr]
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
            self.log.warn(
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
                record_rev = self.store.get(record).rev  # type: ignore[union-attr]
            except DoozerError:
                record_rev = 0
            d = self._internal_write(
                mutation.SET, f"/ctl/cal/{slot}", b"", slot_rev, compare=((record, record_rev),)
            )
            # Only while in flight: a removal refused (say FORBIDDEN, racing
            # another) or not decided in time is proposed again at a later
            # round if the member is still silent. Kept for good, it would
            # leave a dead member in the CAL forever once every live member
            # had failed once at that slot's rev.
            d.addBoth(lambda _, key=key: self._removing.discard(key))

    def _forget_gone_nodes(self) -> None:
        """Delete the ``/ctl/node/<id>`` records of nodes that are neither in
        the CAL nor heard from for ``--timeout`` (a restarted process comes
        back with a new id, so without this the records grow forever).

        Only the member in the lowest slot does it, so the members do not all
        propose the same deletes; each is conditioned on the file's rev.
        """
        cal = self.store.cal()
        if not cal or cal[0] != self.id:
            return
        now = self.clock.seconds()
        since = max(self._running_since, self._awake_since)
        heard = self.sequencer.last_heard
        try:
            known = self.store.getdir("/ctl/node")
        except DoozerError:
            return
        members = set(cal)
        # Deletes proposed lately: not again while they may still commit.
        # Later a node that came back and went again is forgotten again.
        forgetting = self._forgetting
        for node_id in [n for n, t in forgetting.items() if now - t > self.timeout]:
            del forgetting[node_id]
        for node_id in known:
            if node_id == self.id or node_id in members or node_id in forgetting:
                continue
            if now - max(heard.get(node_id, float("-inf")), since) <= self.timeout:
                continue
            forgetting[node_id] = now
            self.log.info("forgetting node {id}: not a member, silent", id=node_id)
            base = f"/ctl/node/{node_id}"
            for name in self.store.getdir(base):
                f = self.store.get(f"{base}/{name}")
                self._internal_write(mutation.DEL, f"{base}/{name}", b"", f.rev)
