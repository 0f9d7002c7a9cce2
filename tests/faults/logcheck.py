"""The node logs of a recorded history (:func:`check_logs`), and their
union, :class:`CommonLog`, which the watch and lease checkers compare with.

Every pair of node logs agrees on the revs both cover; every acknowledged
write is at its acknowledged rev, with its value, in every log covering
that rev; every change in the logs to a key the history wrote is a write
somebody issued; every read's (value, file rev) is what the log has at
that rev.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

from .history import CAS, DELETE, FAIL, OK, READ, SET, WRITES, Event, NodeLog, Op
from .linmodel import REV_MISMATCH
from .results import CheckResult


@dataclass
class CommonLog:
    """The union of the node logs: what happened at each covered rev.

    :param events: rev -> the change at that rev (covered revs without an
        entry were no-ops, failed writes or bookkeeping without a change);
        at a rev with several changes (a lease's end deletes its files and
        ``/ctl/lease/<id>`` at one rev, a transaction applies its ops at
        one rev) the first by path.
    :param coverage: sorted, disjoint, inclusive ``(start, end)`` rev ranges
        that some node's dump covers.
    :param more: rev -> every change at that rev, sorted by path, for the
        revs with more than one.
    """

    events: dict[int, Event]
    coverage: list[tuple[int, int]]
    more: dict[int, tuple[Event, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._starts = [s for s, _e in self.coverage]
        self._revs: list[int] | None = None

    def at(self, rev: int) -> tuple[Event, ...]:
        """Every change at ``rev`` (sorted by path; empty if none)."""
        many = self.more.get(rev)
        if many is not None:
            return many
        one = self.events.get(rev)
        return () if one is None else (one,)

    @classmethod
    def from_logs(cls, logs: Sequence[NodeLog]) -> "CommonLog":
        """Union of ``logs`` (where they disagree, the first one wins)."""
        changes: dict[int, tuple[Event, ...]] = {}
        for log in logs:
            for rev, evs in group_by_rev(log).items():
                changes.setdefault(rev, evs)
        events = {r: evs[0] for r, evs in changes.items()}
        more = {r: evs for r, evs in changes.items() if len(evs) > 1}
        spans = sorted((log.start, log.end) for log in logs if log.start <= log.end)  # type: ignore[operator]
        coverage: list[tuple[int, int]] = []
        for s, e in spans:  # type: ignore[misc]
            if coverage and s <= coverage[-1][1] + 1:
                coverage[-1] = (coverage[-1][0], max(coverage[-1][1], e))
            else:
                coverage.append((s, e))
        return cls(events, coverage, more)

    def covers(self, rev: int) -> bool:
        """Whether some node's dump says what happened at ``rev``."""
        i = bisect_right(self._starts, rev) - 1
        return i >= 0 and rev <= self.coverage[i][1]

    def covered(self, lo: int, hi: int) -> int:
        """How many revs ``lo <= rev < hi`` are covered."""
        return sum(max(0, min(e + 1, hi) - max(s, lo)) for s, e in self.coverage)

    @property
    def revs(self) -> list[int]:
        """The revs with a change, sorted."""
        if self._revs is None or len(self._revs) != len(self.events):
            self._revs = sorted(self.events)
        return self._revs

    def between(self, lo: int, hi: int, match: Callable[[str], bool] | None = None) -> list[Event]:
        """Events with ``lo <= rev < hi`` (matching ``match``), by rev."""
        revs = self.revs
        found = (e for r in revs[bisect_left(revs, lo):bisect_left(revs, hi)] for e in self.at(r))
        return [e for e in found if match is None or match(e.path)]


def disorder(events: Iterable[Event]) -> Iterator[tuple[bool, Event, Event]]:
    """Where a run of events, a log's or a watch stream's, breaks rev order:
    ``(True, prev, e)`` where ``e``'s rev is below the one before it,
    ``(False, prev, e)`` where ``e`` changes a path its rev changed already
    (one rev may hold several changes, one per path: a transaction's)."""
    prev: Event | None = None
    paths: set[str] = set()  # the paths of the events at prev's rev
    for e in events:
        if prev is not None and e.rev < prev.rev:
            yield True, prev, e
        elif prev is not None and e.rev == prev.rev and e.path in paths:
            yield False, prev, e
        if prev is None or e.rev != prev.rev:
            paths = set()
        paths.add(e.path)
        prev = e


def group_by_rev(log: NodeLog) -> dict[int, tuple[Event, ...]]:
    """The changes of ``log`` within its coverage, by rev (sorted by path)."""
    out: dict[int, list[Event]] = defaultdict(list)
    for e in log.events:
        if log.covers(e.rev):
            out[e.rev].append(e)
    return {r: tuple(sorted(evs, key=lambda e: e.path)) for r, evs in out.items()}


def show_events(evs: tuple[Event, ...] | None) -> str:
    if not evs:
        return "nothing"
    return " + ".join(map(str, evs))


def check_logs(logs: Sequence[NodeLog], ops: Sequence[Op] = (), start_rev: int = 0) -> CheckResult:
    """Check node logs against each other and against the history.

    ``start_rev``: the store's rev when recording began; changes before it
    are not expected to match a recorded write (no phantom check there).

    Every log is compared with the union of all (:class:`CommonLog`) over
    the revs it covers, which is the same as comparing every pair on the
    revs both cover, in time linear in the events (a long run has dozens
    of logs: one per node process and stretch).

    ``result.info["common"]`` is the :class:`CommonLog` (for
    :func:`check_watches`); ``result.info["unverified"]`` counts acknowledged
    writes whose rev no log covers.
    """
    result = CheckResult("logs")
    for log in logs:
        for backwards, prev, e in disorder(log.events):
            result.fail(f"node {log.node}: log not strictly ordered by rev at {prev.rev} then {e.rev}"
                        if backwards else f"node {log.node}: {e.path} changed twice at rev {e.rev}")
    common = CommonLog.from_logs(logs)
    result.info["common"] = common
    revs = common.revs
    event_revs = [[e.rev for e in log.events] for log in logs]

    def origin(r: int) -> int:
        """The log that gave the union its event at ``r`` (the first one
        covering ``r`` with an event there), for the messages."""
        for j, log in enumerate(logs):
            if log.covers(r):
                k = bisect_left(event_revs[j], r)
                if k < len(event_revs[j]) and event_revs[j][k] == r:
                    return j
        return -1

    # diffs[i]: rev -> log i's own changes there (None: it has none), where
    # they differ from the union.
    diffs: list[dict[int, tuple[Event, ...] | None]] = []
    for i, log in enumerate(logs):
        own: dict[int, tuple[Event, ...] | None] = {}
        mine = set()
        for rev, evs in group_by_rev(log).items():
            mine.add(rev)
            if common.at(rev) != evs:
                own[rev] = evs
        lo, hi = bisect_left(revs, log.start), bisect_right(revs, log.end)  # type: ignore[arg-type]
        if hi - lo != len(mine):  # the union has changes in this log's range that it lacks
            for r in revs[lo:hi]:
                if r not in mine:
                    own[r] = None
        diffs.append(own)
        by_other: dict[int, list[int]] = defaultdict(list)
        for r in sorted(own):
            by_other[origin(r)].append(r)
        for j, rs in sorted(by_other.items()):
            other = logs[j] if j >= 0 else log
            lo_r, hi_r = max(log.start, other.start), min(log.end, other.end)  # type: ignore[type-var]
            r = rs[0]
            result.fail(
                f"nodes {other.node} and {log.node} diverge at {len(rs)} revs in [{lo_r}, {hi_r}], "
                f"first at rev {r}: {show_events(common.at(r))} vs {show_events(own[r])}"
            )
    any_diff = set().union(*diffs) if diffs else set()
    unverified = 0
    written: dict[str, set[bytes | None]] = defaultdict(set)
    deleted: set[str] = set()
    for o in ops:
        if o.kind in (SET, CAS) and o.outcome != FAIL:
            written[o.key].add(o.value)
        elif o.kind == DELETE and o.outcome != FAIL:
            deleted.add(o.key)
        if o.kind not in WRITES or o.outcome != OK or o.rev is None:
            continue
        want = Event(o.rev, o.key, "del" if o.kind == DELETE else "set", None if o.kind == DELETE else o.value)
        if not common.covers(o.rev):
            unverified += 1
            continue
        if o.rev not in any_diff and want in common.at(o.rev):
            continue  # every log covering the rev has it (they agree with the union there)
        for i, log in enumerate(logs):
            if not log.covers(o.rev):
                continue
            got = diffs[i][o.rev] if o.rev in diffs[i] else common.at(o.rev)
            if not got:
                result.fail(f"node {log.node}: acknowledged write lost: {o} is not in the log at rev {o.rev}")
            elif want not in got:
                result.fail(f"node {log.node}: acknowledged write {o} but the log has {show_events(got)} at rev {o.rev}")
    for o in ops:  # reads and REV_MISMATCHes that named a file rev
        observed = (o.kind == READ and o.outcome == OK) or (o.outcome == FAIL and o.code == REV_MISMATCH)
        if not observed or not o.rev or not common.covers(o.rev):
            continue
        here = common.at(o.rev)
        hit = next((e for e in here if e.path == o.key), None)
        if not here:
            result.fail(f"{o} reports file rev {o.rev}, but nothing changed at that rev")
        elif hit is None or hit.op != "set" or (o.kind == READ and hit.value != o.value):
            result.fail(f"{o} reports file rev {o.rev}, but the log has {show_events(here)} at that rev")
    keys = set(written) | deleted
    first_at: dict[tuple[str, bytes | None], int] = {}
    again: dict[tuple[str, bytes | None], list[int]] = defaultdict(list)
    for e in (e for r in revs for e in common.at(r)):
        if e.path not in keys or e.rev <= start_rev:
            continue
        if e.op == "set" and e.value not in written[e.path]:
            result.fail(f"phantom write: the log has {e}, a value no client wrote to {e.path}")
        elif e.op == "del" and e.path not in deleted:
            result.fail(f"phantom delete: the log has {e}, but no client deleted {e.path}")
        elif e.op == "set":
            pv = (e.path, e.value)
            if first_at.setdefault(pv, e.rev) != e.rev:
                again[pv].append(e.rev)
    if again:
        # A value at more revs than writes of it (ok or indeterminate) were
        # issued: one write applied twice (every value is unique in a run).
        writers: dict[tuple[str, bytes | None], int] = defaultdict(int)
        for o in ops:
            if o.kind in (SET, CAS) and o.outcome != FAIL and (o.key, o.value) in again:
                writers[(o.key, o.value)] += 1
        for (path, value), later in again.items():
            at = [first_at[(path, value)], *later]
            if len(at) > writers[(path, value)]:
                n = writers[(path, value)]
                result.fail(
                    f"value applied twice: {value!r}, written to {path} by {n} write{'s' if n != 1 else ''}, "
                    f"is in the log at {len(at)} revs: {', '.join(map(str, at[:10]))}"
                )
    result.info["unverified"] = unverified
    return result
