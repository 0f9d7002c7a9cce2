"""The watch streams of a recorded history (:func:`check_watches`).

Every watch stream (the calls of one client resuming from ``next``) is
strictly ordered, without duplicates, and equals the common log filtered
by its glob between its first requested rev and its last ``next``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from typing import Callable, Sequence

from .history import OK, WATCH, Event, Op
from .logcheck import CommonLog, disorder, show_events
from .results import CheckResult

try:  # the project's own glob semantics, when available
    from doozer.store.path import compile_glob as _project_compile_glob
except ImportError:  # pragma: no cover - only before doozer/store/path.py exists
    _project_compile_glob = None

def compile_glob(glob: str) -> Callable[[str], bool]:
    """SPEC §2 glob matcher: the project's, or a local translation."""
    if _project_compile_glob is not None:
        return _project_compile_glob(glob)
    import re

    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    rx = re.compile("".join(out), re.DOTALL)
    return lambda path: rx.fullmatch(path) is not None


def _segments(calls: Sequence[Op], result: CheckResult, sid: str) -> list[list[Op]]:
    """Split one stream's calls into runs that resume from ``next``.  A
    failed or indeterminate call ends a run (the client may restart
    anywhere); otherwise a call not resuming from the previous ``next`` is a
    harness error (reported) and also starts a new run."""
    segs: list[list[Op]] = []
    cur: list[Op] = []
    for c in calls:
        if c.outcome != OK:
            if cur:
                segs.append(cur)
            cur = []
            continue
        if cur and c.prec != cur[-1].rev:
            result.fail(f"watch stream {sid}: {c} does not resume from the previous next={cur[-1].rev}")
            segs.append(cur)
            cur = []
        cur.append(c)
    if cur:
        segs.append(cur)
    return segs


def check_watches(ops: Sequence[Op], common: CommonLog | None = None) -> CheckResult:
    """Check every watch stream in ``ops`` (against ``common`` if given).

    ``result.info["unverified"]`` counts stream revs that no log covered.
    """
    result = CheckResult("watches")
    streams: dict[str, list[Op]] = defaultdict(list)
    for o in ops:
        if o.kind == WATCH:
            streams[o.stream_id].append(o)
    unverified = 0
    checked = 0
    by_glob: dict[str, list[int]] = {}
    for sid, calls in sorted(streams.items()):
        calls.sort(key=lambda o: (o.invoke, o.id))
        match = compile_glob(calls[0].key)
        for seg in _segments(calls, result, sid):
            got: list[Event] = []
            for c in seg:
                evs = c.events or []
                asked = c.prec if c.prec is not None else 0
                for e in evs:
                    if not match(e.path):
                        result.fail(f"watch stream {sid}: {e} does not match the glob")
                    if e.rev < asked:
                        result.fail(f"watch stream {sid}: {e} is older than the rev asked for ({asked})")
                if c.rev is None:
                    result.fail(f"watch stream {sid}: {c} has no next")
                elif evs and c.rev != evs[-1].rev + 1:
                    result.fail(f"watch stream {sid}: next={c.rev} is not one past the last event ({evs[-1].rev})")
                elif not evs and c.rev < asked:
                    result.fail(f"watch stream {sid}: next={c.rev} is below the rev asked for ({asked})")
                got.extend(evs)
            for backwards, prev, e in disorder(got):
                result.fail(f"watch stream {sid}: events out of order: {prev} then {e}" if backwards
                            else f"watch stream {sid}: duplicated event at rev {e.rev}: {prev} then {e}")
            if common is None:
                continue
            if seg[0].prec is not None:
                lo = seg[0].prec
            else:  # asked for "changes from now on": starts where it first saw one
                lo = got[0].rev if got else (seg[0].rev or 0)
            hi = seg[-1].rev if seg[-1].rev is not None else lo
            checked += 1
            received: dict[tuple[int, str], Event] = {}
            for e in got:
                received.setdefault((e.rev, e.path), e)
            if hi > lo:
                unverified += (hi - lo) - common.covered(lo, hi)
            # What the stream got, against the log ...
            for (r, path), have in sorted(received.items()):
                if not lo <= r < hi or not common.covers(r):
                    continue
                at = [e for e in common.at(r) if match(e.path)]
                want = next((e for e in at if e.path == path), None)
                if want is None and not at:
                    result.fail(f"watch stream {sid}: got {have}, but the log has no such change at rev {r}")
                elif want != have:
                    result.fail(f"watch stream {sid}: got {have}, but the log has {show_events(tuple(at))}")
            # ... and what the log has for the glob, against the stream.
            if calls[0].key not in by_glob:
                by_glob[calls[0].key] = _matching_revs(common, match)
            revs = by_glob[calls[0].key]
            for r in revs[bisect_left(revs, lo):bisect_left(revs, hi)]:
                for e in common.at(r):
                    if (r, e.path) not in received and match(e.path):
                        result.fail(f"watch stream {sid}: gap: missed {e} (stream covers revs {lo}..{hi - 1})")
    result.info.update(streams=len(streams), segments_checked=checked, unverified=unverified)
    return result


def _matching_revs(common: CommonLog, match: Callable[[str], bool]) -> list[int]:
    """The revs of the common log's changes whose path matches (sorted)."""
    memo: dict[str, bool] = {}
    out = []
    for r in common.revs:
        for e in common.at(r):
            hit = memo.get(e.path)
            if hit is None:
                hit = memo[e.path] = bool(match(e.path))
            if hit:
                out.append(r)
                break
    return out
