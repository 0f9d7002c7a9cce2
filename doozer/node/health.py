"""What ``/livez`` and ``/readyz`` say (SPEC §11): the node's verdicts on
itself, pure functions of its state and the time, and the watch on its disk.

- **Live**: the node is worth keeping: it has not stopped for good (a bug,
  a failed write to its data dir) and, with ``--data-dir``, its disk
  answers. That the event loop turns needs no test here: an answer to the
  probe is the proof, and a loop that does not turn gives none (the probe
  times out). A supervisor restarts a node that is not live.
- **Ready**: the node is worth sending clients to: it is in a cluster,
  within one window (α instances) of the highest instance it has heard of,
  and, for a member, a quorum of the next instance's voters has been heard
  from lately (``heard_lately``: three PING intervals, so a stopped peer
  counts as gone within seconds, not ``--timeout``). A load balancer skips
  a node that is not ready; nothing restarts it.

The reasons are checked in a fixed order and the first that holds is the
answer, so a probe's body names one cause (the most basic one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from doozer.errors import DoozerError

if TYPE_CHECKING:  # the verdicts read a node; typing only
    from doozer.node.node import Node
    from doozer.storage.syncer import Syncer
    from doozer.storage.writer import Runner

T = TypeVar("T")

#: Seconds the disk may owe an answer (one write and fsync, a snapshot
#: written, old segments deleted) before the node is not live. Far above a
#: slow fsync (tens of ms) and a snapshot of a large store (seconds), far
#: below a hung device, which never answers.
DISK_STALL = 30.0


class DiskWatch:
    """A :class:`~doozer.storage.writer.Runner` that knows how long the disk
    has owed an answer.

    It stands between the data dir's writer and the runner that does the
    blocking work (one thread, one piece at a time, in order), and notes on
    the reactor thread when each piece is handed over and when it comes
    back. Nothing on the writer's thread, no probe writes: it costs two
    clock reads per batch.

    It stands in front of the syncer too, when there is one (the child
    process that writes the log's batches, :mod:`doozer.storage.syncer`),
    and starts and stops it with the runner: the writer never has the two
    working at once, so what either owes is owed in turn.

    :param runner: the runner doing the work.
    :param clock: the reactor's time.
    :param syncer: the syncer, started and stopped with the runner.
    """

    def __init__(self, runner: "Runner", clock: IReactorTime,
                 syncer: "Optional[Syncer]" = None) -> None:
        self._runner = runner
        self._clock = clock
        self._syncer = syncer
        self._owed: dict[int, float] = {}  # piece -> when it was handed over, oldest first
        self._count = 0
        self._answered = float("-inf")  # when the disk last finished a piece

    def start(self) -> None:
        """Start the runner and the syncer."""
        self._runner.start()
        if self._syncer is not None:
            self._syncer.start()

    def stop(self) -> None:
        """Stop the runner and the syncer."""
        self._runner.stop()
        if self._syncer is not None:
            self._syncer.stop()

    def __call__(self, work: Callable[[], None]) -> "Deferred[None]":
        return self._watch(lambda: self._runner(work))

    # -- the Syncer protocol, for the writer --------------------------------

    @property
    def running(self) -> bool:
        """Whether the syncer takes writes."""
        return self._syncer is not None and self._syncer.running

    @property
    def max_data(self) -> int:
        """The most bytes one of the syncer's writes may carry."""
        return 0 if self._syncer is None else self._syncer.max_data

    def write(self, fd: int, data: bytes, offset: int, path: str) -> "Deferred[float]":
        """Hand a write to the syncer, noting it as owed until it is back."""
        syncer = self._syncer
        assert syncer is not None
        return self._watch(lambda: syncer.write(fd, data, offset, path))

    def _watch(self, hand_over: Callable[[], "Deferred[T]"]) -> "Deferred[T]":
        piece = self._count
        self._count += 1
        self._owed[piece] = self._clock.seconds()
        try:
            d = hand_over()
        except BaseException:
            del self._owed[piece]  # never handed over: nothing is owed
            raise
        d.addBoth(self._back, piece)
        return d

    def _back(self, result: Any, piece: int) -> Any:
        self._owed.pop(piece, None)
        self._answered = self._clock.seconds()
        return result  # a failure goes on to the writer, untouched

    def owed_since(self) -> Optional[float]:
        """Since when the disk has owed an answer, or None when it owes none.

        The pieces run one after the other, so the oldest piece waiting
        started only when the one before it came back: its hand-over time
        or the last answer, whichever is later.
        """
        for handed in self._owed.values():
            return max(handed, self._answered)
        return None


@dataclass(frozen=True)
class Verdict:
    """A probe's answer: ``ok``, else why not (``reason``, a stable word;
    ``detail``, a sentence for people; ``figures``, the numbers behind it)."""

    ok: bool
    reason: str = ""
    detail: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def error(self, code: str, flag: str) -> DoozerError:
        """The HTTP error of a failed probe: ``code`` (``NOT_LIVE`` or
        ``NOT_READY``) with ``flag`` (``live`` or ``ready``) false."""
        return DoozerError(code, self.detail, **{flag: False, "reason": self.reason, **self.figures})


OK = Verdict(True)


def _disk(node: "Node", now: float) -> Optional[Verdict]:
    storage = node.storage
    watch = storage.data.disk if storage is not None else None
    since = watch.owed_since() if watch is not None else None
    if since is None or now - since <= DISK_STALL:
        return None
    waited = round(now - since, 1)
    return Verdict(
        False,
        "disk_stalled",
        f"the data dir's disk has not finished a write for {waited:g} s "
        f"(more than {DISK_STALL:g} s): it does not answer",
        {"stalled_seconds": waited},
    )


def _failed(node: "Node") -> Optional[Verdict]:
    if node.failed is None:
        return None
    return Verdict(False, "failed", f"the node has stopped for good: {node.failed}")


def liveness(node: "Node", now: float) -> Verdict:
    """``/livez``: not live when the node has stopped for good or its disk
    has owed an answer for more than :data:`DISK_STALL` seconds."""
    return _failed(node) or _disk(node, now) or OK


def readiness(node: "Node", now: float) -> Verdict:
    """``/readyz``: the first of these that holds, else ready.

    ``failed`` and ``disk_stalled`` (not live); ``no_cluster`` (looking
    for its cluster or copying its state); ``stopped`` (shutting down);
    ``catching_up`` (more than α instances behind the highest it has heard
    of); for a member ``no_quorum`` (fewer than a quorum of the next
    instance's voters heard from lately, itself included); for a
    non-member ``no_peers`` (no voter heard from lately, so it cannot
    know how far behind it is).
    """
    not_live = _failed(node) or _disk(node, now)
    if not_live is not None:
        return not_live
    seq = node.sequencer
    if seq is None:
        return Verdict(False, "no_cluster", "the node is in no cluster yet: it is looking for its "
                       "peers or copying the cluster's state")
    if not node.running:
        return Verdict(False, "stopped", "the node is shutting down")
    applied = node.applied_seqn
    highest = max([applied, seq.decided_seqn, *seq.peer_decided.values()])
    if highest - applied > seq.alpha:
        return Verdict(
            False,
            "catching_up",
            f"the node has applied instance {applied}, {highest - applied} behind the highest "
            f"it has heard of ({highest}); it is ready within {seq.alpha} (one window)",
            {"behind": highest - applied, "window": seq.alpha},
        )
    voters = seq.members(seq.decided_seqn + 1) or ()
    heard = sum(1 for v in voters if v == node.id or seq.heard_lately(v, now))
    if node.id in voters or node.member:
        quorum = len(voters) // 2 + 1
        if not voters or heard < quorum:
            return Verdict(
                False,
                "no_quorum",
                f"the node has heard lately from {heard} of the {len(voters)} voting members"
                f"{' (itself included)' if node.id in voters else ''}; a quorum is {quorum}",
                {"voters": len(voters), "connected": heard, "quorum": quorum},
            )
    elif heard == 0:
        return Verdict(
            False,
            "no_peers",
            "the node has heard from no voting member lately, so it cannot tell how far "
            "behind it is",
            {"voters": len(voters), "connected": 0},
        )
    return OK
