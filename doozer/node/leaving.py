"""Leaving the cluster (SPEC §11): ``doozer leave`` and the SIGTERM hand-off.

``leave`` (``DELETE /v1/self/slot``) empties this member's CAL slot through
the log, like any CAL change, and answers once the node has stopped voting:
the members skip to the new membership at once (the voting gap,
CONSENSUS.md), so that is about a round trip after the removal is applied.
It is refused (``NO_QUORUM``) when the members left, or the voters of the
instances still open, would have no quorum without this node: a node that
leaves a dead member's CAL behind would stop the cluster for good.

The hand-off (SIGTERM) runs before the process exits: new writes are
refused (``READONLY``, which clients fail over), a memory-only member leaves
its slot when the others keep a quorum (its id can never come back: a
restarted process has a new one), the sequencer gives up the node's unused
instances (:meth:`Proposer.hand_off
<doozer.consensus.proposer.Proposer.hand_off>`), and the node waits, within
a grace period, until its writes in flight are answered and it votes no
more. A member with a data dir keeps its slot (it restarts under its id) and
hands off only the instances of the window. docs/operations.md, "Leaving".

A collaborator of :class:`doozer.node.node.Node`, which holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozer.errors import DoozerError
from doozer.store import Dir, mutation

if TYPE_CHECKING:  # the node holds this collaborator; typing only
    from doozer.node.node import Node

#: Seconds the SIGTERM hand-off may take at most before the process exits
#: anyway (its writes still waiting then answer UNAVAILABLE, indeterminate).
HAND_OFF_GRACE = 10.0
#: Seconds between two looks at whether the hand-off is done.
POLL = 0.01


class Leaving:
    """How a node leaves: on request, or when told to stop.

    :param node: the node that leaves (it holds this collaborator).
    """

    log = Logger()

    def __init__(self, node: "Node") -> None:
        self.node = node
        #: SIGTERM arrived: writes are refused, own instances given up
        self.handing_off = False
        #: this node emptied its own slot: it claims none again (a restart,
        #: which in memory mode is a new node, does)
        self.left = False
        self._hand_off: Optional[defer.Deferred[dict[str, Any]]] = None

    # ------------------------------------------------------------------
    # doozer leave

    def leave(self) -> "defer.Deferred[dict[str, Any]]":
        """Empty this member's CAL slot and stop voting.

        :returns: a Deferred firing with ``{"slot", "rev", "voting"}`` once
            the removal is applied and the node votes no more (or, if that
            takes longer than the write timeout, with ``"voting": true``).
        :raises DoozerError: ``READONLY`` when the node is in no cluster or
            is shutting down, ``NOENT`` when it holds no slot, ``NO_QUORUM``
            when the members left would have no quorum.
        """
        node = self.node
        node._in_cluster()
        if self.handing_off:
            raise DoozerError("READONLY", "this node is shutting down; it leaves on its own")
        return self._remove_self()

    def check_quorum(self) -> None:
        """Refuse (``NO_QUORUM``) a leave after which a quorum is missing:
        among the members that stay, or among the voters of the instances
        still open (the next one and the end of the window: until the
        removal counts, they are decided by the old membership, without
        this node). Live means heard from within three PING periods."""
        node = self.node
        seq = node.require_sequencer()
        me = node.id
        now = node.clock.seconds()
        rest = [h for _, h in node.info.slots() if h and h != me]
        if not rest:
            raise DoozerError(
                "NO_QUORUM",
                "this node is the cluster's only member; it cannot leave (the cluster "
                "would have no member)",
                members_left=0, live=0, quorum=1,
            )
        groups: list[tuple[str, list[str], int]] = [("members left", rest, len(rest) // 2 + 1)]
        for seqn in (seq.decided_seqn + 1, seq.decided_seqn + node.alpha):
            voters = seq.members(seqn)
            if voters and me in voters:
                others = [h for h in voters if h != me]
                groups.append((f"voters of seqn {seqn}", others, len(voters) // 2 + 1))
        for what, ids, quorum in groups:
            live = [h for h in ids if seq.heard_lately(h, now)]
            if len(live) < quorum:
                raise DoozerError(
                    "NO_QUORUM",
                    f"without this node the {what} would have no quorum: {len(live)} of "
                    f"{len(ids)} heard from lately, {quorum} needed; bring members back "
                    "or add one before this node leaves",
                    members_left=len(rest), live=len(live), quorum=quorum,
                )

    def _remove_self(self) -> "defer.Deferred[dict[str, Any]]":
        node = self.node
        slots = [n for n, h in node.info.slots() if h == node.id]
        if not slots:
            raise DoozerError("NOENT", "this node holds no CAL slot: it is not a member")
        slot = slots[0]
        self.check_quorum()
        path = f"/ctl/cal/{slot}"
        f = node.store.get(path)
        if isinstance(f, Dir):  # pragma: no cover - a slot is a file (cal_slots)
            raise DoozerError("ISDIR", f"{path} is a directory")
        # Set before it is proposed: once the slot is empty the chores must
        # not claim it again (the slot stays free for a replacement).
        self.left = True
        node.log.info("leaving: emptying CAL slot {slot}", slot=slot)
        d = node.writes.propose(
            mutation.SET, path, b"", f.rev, timeout=node.write_timeout, client=None
        )

        def failed(failure: Failure) -> Failure:
            e = failure.value
            if not (isinstance(e, DoozerError) and e.extra.get("indeterminate")):
                self.left = False  # certainly still a member (or removed by others)
            return failure

        def applied(outcome: Any) -> "defer.Deferred[dict[str, Any]]":
            rev = outcome.rev
            deadline = node.clock.seconds() + node.write_timeout
            return self._until(lambda: not node.voting, deadline).addCallback(
                lambda _: {"slot": slot, "rev": rev, "voting": node.voting}
            )

        return d.addCallbacks(applied, failed)

    # ------------------------------------------------------------------
    # SIGTERM

    def hand_off(self, grace: float = HAND_OFF_GRACE) -> "defer.Deferred[dict[str, Any]]":
        """Hand off before the process exits (SPEC §11); idempotent.

        :returns: a Deferred that fires (never fails) with what was done:
            ``left`` (the slot emptied), ``pending`` (writes still waiting
            when it ended), ``voting``, ``seconds``.
        """
        if self._hand_off is not None:
            return self._hand_off
        node = self.node
        self.handing_off = True
        seq = node.sequencer
        start = node.clock.seconds()
        if seq is None or not node.running or node.failed is not None:
            self._hand_off = defer.succeed({"left": False, "pending": 0, "voting": False,
                                            "seconds": 0.0})
            return self._hand_off
        deadline = start + grace
        # "removing": the removal is under way (its Deferred's own ``called``
        # turns true when it is applied, before the node stops voting).
        done = {"left": False, "removing": False}
        if node.member and node.storage is None:
            try:
                removal = self._remove_self()
            except DoozerError as e:
                node.log.info("shutting down without leaving the CAL: {why}", why=e.detail)
            else:
                done["removing"] = True

                def removed(result: Any) -> None:
                    done["left"] = True
                    done["removing"] = False

                def kept(failure: Failure) -> None:
                    done["removing"] = False
                    node.log.warn(
                        "shutting down without leaving the CAL: {why}", why=failure.getErrorMessage()
                    )

                removal.addCallbacks(removed, kept)
        # Queued items (the removal first) are proposed before the rest of
        # this node's instances are given up.
        seq.hand_off(node.clock.seconds())
        node.schedule_pump()

        def finished() -> bool:
            if done["removing"] or len(node.writes):
                return False
            durable = seq.durable
            # The SKIP waits for its horizon's fsync (D4).
            return durable is None or not durable.held

        def report(_: object) -> dict[str, Any]:
            result = {
                "left": done["left"],
                "pending": len(node.writes),
                "voting": node.voting,
                "seconds": node.clock.seconds() - start,
            }
            node.log.info(
                "handed off in {seconds:.3f} s: left the CAL: {left}, writes still waiting: "
                "{pending}, voting: {voting}",
                **result,
            )
            return result

        self._hand_off = self._until(finished, deadline).addCallback(report)
        return self._hand_off

    def _until(self, ready: Callable[[], bool], deadline: float) -> "defer.Deferred[None]":
        """Fires once ``ready()`` holds or ``deadline`` has passed (looked
        at every :data:`POLL` seconds on the node's clock)."""
        clock = self.node.clock
        d: defer.Deferred[None] = defer.Deferred()

        def look() -> None:
            if ready() or clock.seconds() >= deadline:
                d.callback(None)
            else:
                clock.callLater(POLL, look)

        look()
        return d
