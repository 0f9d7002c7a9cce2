"""The lease checks of the fault suite (SPEC §9, CONSENSUS.md §L): pure
functions of a recorded history (the holders' :class:`LeaseOp` s, the watch
calls, the node logs and the nemesis's fault windows).

A lease's **end** is the rev at which the log deletes ``/ctl/lease/<id>``.
The log has no times, so each check that needs one uses a bound that can
only err towards passing:

- An end was applied (decided) no later than the first **observation** of
  it: the arrival of a watch answer carrying that delete, or of a
  ``NOENT`` answer to a keepalive, probe or revoke of the lease (a node
  answers after applying). Arrival times are taken after the answer was
  read, so they are late, never early.
- A keepalive was sent no earlier than its recorded ``invoke`` (taken just
  before the request is written).

**G1** (a lease never expires before ``ttl`` s since the send of a
keepalive answered 200): for every lease that ended otherwise than by its
holder's revoke, its first observation must not come before ``invoke +
ttl`` of any of its keepalives answered 200 (or of its grant). An
observation before that bound means the end was decided before it: a
violation for certain. With an indeterminate revoke of the lease, only
observations before the revoke's invoke count (a later one may be the
revoke).

**G2** (a silent holder's lease ends within ``ttl × 1.02 + 2`` s once a
quorum is connected): for a holder that stopped renewing at ``t`` (its
``silence`` mark, after its last answer) and whose every keepalive was
answered (an unanswered one may still be decided later and renew it), a
``consistent=1`` read invoked after ``t + ttl × 1.02 + 2`` that still found
``/ctl/lease/<id>`` means the end had not been decided when that read
began: a violation, if no fault window of the nemesis (fault start to
healthy again) overlaps the time from the last renewal's send to that
read.

**Election** (no two holders of the key at once), from the log alone: the
key's changes alternate set, delete (a set while a tenure is open means two
holders overlap); each tenure ``[set rev, delete rev)`` is held by the
lease its value names, which was granted before the set and had not ended
at it; the key's delete is at the rev of that lease's end, and the lease
does not end while the tenure is open without it (SPEC §9 G3). And in
time: a holder whose takeover was answered 200 believes itself holder
until ``invoke + ttl`` of its last keepalive answered 200 (or until it sent
a revoke); no later holder's takeover may be answered before then.

Also checked: each acknowledged grant, revoke and takeover is in the log at
its rev.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .logcheck import CommonLog
from .history import FAIL, INDETERMINATE, OK, WATCH, History, Op
from .leaseops import GRANT, KEEPALIVE, PROBE, REVOKE, SILENCE, TAKEOVER, LeaseOp
from .results import CheckResult

LEASE_DIR = "/ctl/lease/"
#: SPEC §9 G2: ttl × DRIFT + SLACK.
DRIFT, SLACK = 1.02, 2.0


@dataclass
class _Lease:
    """What the record and the log say about one lease."""

    id: str
    ttl: Optional[int] = None
    ops: list[LeaseOp] = field(default_factory=list)
    granted: Optional[int] = None  # rev of the /ctl/lease/<id> set in the log
    ended: Optional[int] = None  # rev of its delete
    seen: list[tuple[float, str]] = field(default_factory=list)  # observations of the end

    def of(self, kind: str) -> list[LeaseOp]:
        return [o for o in self.ops if o.kind == kind]

    def promised(self) -> tuple[float, Optional[LeaseOp]]:
        """G1's bound: the latest ``invoke + ttl`` of a grant or keepalive
        answered 200, and that op."""
        best: tuple[float, Optional[LeaseOp]] = (float("-inf"), None)
        for o in self.ops:
            if o.kind in (GRANT, KEEPALIVE) and o.outcome == OK and self.ttl is not None:
                if o.invoke + self.ttl > best[0]:
                    best = (o.invoke + self.ttl, o)
        return best


def _leases(history: History, common: CommonLog) -> dict[str, _Lease]:
    out: dict[str, _Lease] = {}

    def get(lid: str) -> _Lease:
        if lid not in out:
            out[lid] = _Lease(lid)
        return out[lid]

    for o in history.leases:
        if o.lease is None:
            continue
        lease = get(o.lease)
        lease.ops.append(o)
        if o.kind == GRANT and o.ttl is not None:
            lease.ttl = o.ttl
        if o.kind in (KEEPALIVE, PROBE, REVOKE) and o.outcome == FAIL and o.code == "NOENT":
            assert o.complete is not None  # a failure was answered
            lease.seen.append((o.complete, f"{o.kind} NOENT"))
    for r in common.revs:
        for e in common.at(r):
            if e.path.startswith(LEASE_DIR):
                lease = get(e.path[len(LEASE_DIR):])
                if e.op == "set" and lease.granted is None:
                    lease.granted = r
                elif e.op == "del" and lease.ended is None:
                    lease.ended = r
    for w in history.ops:
        if w.kind == WATCH and w.outcome == OK and w.complete is not None:
            for e in w.events or ():
                if e.op == "del" and e.path.startswith(LEASE_DIR):
                    get(e.path[len(LEASE_DIR):]).seen.append((w.complete, f"watch {w.stream_id}"))
    return out


def check_leases(history: History, common: Optional[CommonLog] = None) -> CheckResult:
    """Every lease check above on ``history`` (``common``: the union of its
    node logs, if already built)."""
    result = CheckResult("leases")
    common = common if common is not None else CommonLog.from_logs(history.logs)
    leases = _leases(history, common)
    _check_record_in_log(history.leases, leases, common, result)
    revoked = _check_g1(leases, result)
    _check_g2(leases, history.faults, result)
    _check_election(history.leases, leases, common, result)
    ka: dict[str, int] = defaultdict(int)
    for o in history.leases:
        if o.kind == KEEPALIVE:
            ka[o.outcome if o.code is None or o.outcome == OK else f"{o.outcome} {o.code}"] += 1
    ended = [x for x in leases.values() if x.ended is not None]
    result.info.update(
        granted=sum(1 for o in history.leases if o.kind == GRANT and o.outcome == OK),
        ended=len(ended),
        revoked=revoked,
        expired=len(ended) - revoked,
        keepalives=dict(sorted(ka.items())),
        silent=sum(1 for o in history.leases if o.kind == SILENCE),
        takeovers_ok=sum(1 for o in history.leases if o.kind == TAKEOVER and o.outcome == OK),
    )
    return result


def _check_record_in_log(ops: Sequence[LeaseOp], leases: dict[str, _Lease], common: CommonLog,
                         result: CheckResult) -> None:
    """Acknowledged grants, revokes and takeovers are in the log at their rev."""
    for o in ops:
        if o.outcome != OK or o.rev is None or not common.covers(o.rev):
            continue
        at = common.at(o.rev)
        if o.kind == GRANT:
            ok = any(e.path == LEASE_DIR + str(o.lease) and e.op == "set" for e in at)
        elif o.kind == REVOKE:
            ok = any(e.path == LEASE_DIR + str(o.lease) and e.op == "del" for e in at)
        elif o.kind == TAKEOVER:
            ok = any(e.op == "set" and e.value == (o.value or "").encode() for e in at)
        else:
            continue
        if not ok:
            result.fail(f"acknowledged {o.kind} not in the log at its rev: {o}; the log has "
                        f"{' + '.join(map(str, at)) or 'nothing'}")


def _check_g1(leases: dict[str, _Lease], result: CheckResult) -> int:
    """G1 (see the module docs); returns how many leases ended by revoke."""
    revoked = checked = 0
    margins: list[float] = []
    for lease in leases.values():
        if lease.ended is None:
            continue
        revokes = [o for o in lease.of(REVOKE) if o.outcome != FAIL]
        if any(o.outcome == OK and o.rev == lease.ended for o in revokes):
            revoked += 1
            continue
        cutoff = min((o.invoke for o in revokes), default=float("inf"))
        seen = sorted(s for s in lease.seen if s[0] < cutoff)
        bound, op = lease.promised()
        if not seen or op is None:
            continue
        checked += 1
        t_obs, how = seen[0]
        margins.append(t_obs - bound)
        if t_obs < bound:
            result.fail(
                f"G1: lease {lease.id} (ttl {lease.ttl}) ended at rev {lease.ended}, seen ended at "
                f"{t_obs:.3f} ({how}), {bound - t_obs:.3f} s before the send + ttl of {op}"
            )
    result.info["g1_checked"] = checked
    result.info["g1_least_margin_s"] = round(min(margins), 3) if margins else None
    return revoked


def _faulty(faults: Sequence[tuple[float, float]], lo: float, hi: float) -> bool:
    return any(a <= hi and lo <= b for a, b in faults)


def _check_g2(leases: dict[str, _Lease], faults: Sequence[tuple[float, float]], result: CheckResult) -> None:
    """G2 (see the module docs)."""
    checked = unanswered = faulty = 0
    delays: list[float] = []
    for lease in leases.values():
        for quiet in lease.of(SILENCE):
            ttl = quiet.ttl or lease.ttl
            before = [o for o in lease.ops if o.kind in (GRANT, KEEPALIVE) and o.invoke < quiet.invoke]
            if ttl is None or any(o.outcome == INDETERMINATE for o in before):
                unanswered += 1  # an unanswered renewal may still be decided later
                continue
            renewed = max((o.invoke for o in before if o.outcome == OK), default=None)
            if renewed is None:
                continue
            deadline = quiet.invoke + ttl * DRIFT + SLACK
            probes = sorted((o for o in lease.of(PROBE) if o.invoke > quiet.invoke), key=lambda o: o.invoke)
            gone = next((o for o in probes if o.outcome == FAIL and o.code == "NOENT"), None)
            last = gone or (probes[-1] if probes else None)
            if last is None:
                continue
            if _faulty(faults, renewed, last.invoke):
                faulty += 1
                continue
            checked += 1
            if gone is not None:
                delays.append(gone.complete - quiet.invoke)  # type: ignore[operator]
            late = next((o for o in probes if o.outcome == OK and o.invoke > deadline), None)
            if late is not None:
                result.fail(
                    f"G2: lease {lease.id} (ttl {ttl}) silent since {quiet.invoke:.3f} is still there at a "
                    f"consistent read invoked {late.invoke - quiet.invoke:.3f} s later (bound "
                    f"{ttl * DRIFT + SLACK:.2f} s), with no fault since its last renewal: {late}"
                )
    result.info["g2_checked"] = checked
    result.info["g2_skipped"] = {"unanswered keepalive": unanswered, "fault": faulty}
    result.info["g2_longest_silence_to_gone_s"] = round(max(delays), 3) if delays else None


def _check_election(ops: Sequence[LeaseOp], leases: dict[str, _Lease], common: CommonLog,
                    result: CheckResult) -> None:
    """The election key's tenures: disjoint in the log, tied to their
    lease's life, and never overlapping a former holder's belief."""
    by_value = {o.value.encode(): o for o in ops if o.kind == TAKEOVER and o.value is not None
                and o.outcome != FAIL}
    keys = {e.path for r in common.revs for e in common.at(r) if e.op == "set" and e.value in by_value}
    tenures: list[tuple[int, Optional[int], LeaseOp]] = []  # (set rev, del rev, takeover)
    for key in sorted(keys):
        open_: Optional[tuple[int, LeaseOp]] = None
        for r in common.revs:
            for e in common.at(r):
                if e.path != key:
                    continue
                if e.op == "set":
                    t = by_value.get(e.value)  # type: ignore[arg-type]
                    if t is None:
                        result.fail(f"election: {e}: a value no takeover wrote")
                        continue
                    if open_ is not None:
                        result.fail(f"election: two holders overlap: {e} ({t.process}, lease {t.lease}) while the "
                                    f"tenure from rev {open_[0]} ({open_[1].process}, lease {open_[1].lease}) is open")
                        tenures.append((open_[0], r, open_[1]))
                    lease = leases.get(str(t.lease))
                    if lease is not None and (lease.granted is None or lease.granted >= r
                                              or (lease.ended is not None and lease.ended < r)):
                        result.fail(f"election: {e} attached to lease {t.lease}, which the log shows "
                                    f"granted at {lease.granted} and ended at {lease.ended}")
                    open_ = (r, t)
                elif open_ is None:
                    result.fail(f"election: {e}: deleted while nobody held it")
                else:
                    start, t = open_
                    lease = leases.get(str(t.lease))
                    if lease is None or lease.ended != r:
                        result.fail(f"election: {e} ends the tenure from rev {start} (lease {t.lease}), but "
                                    f"that lease ended at {lease.ended if lease else None}")
                    tenures.append((start, r, t))
                    open_ = None
        if open_ is not None:
            start, t = open_
            lease = leases.get(str(t.lease))
            if lease is not None and lease.ended is not None and lease.ended > start and common.covers(lease.ended):
                result.fail(f"election: lease {t.lease} ended at rev {lease.ended} but its file "
                            f"{key} (set at rev {start}) is still there")
            tenures.append((start, None, t))
    _check_beliefs(tenures, leases, result)
    result.info["tenures"] = len(tenures)


def _check_beliefs(tenures: list[tuple[int, Optional[int], LeaseOp]], leases: dict[str, _Lease],
                   result: CheckResult) -> None:
    """No takeover answered 200 while an earlier holder still believed
    itself holder (its lease promised to it by G1, not revoked)."""
    tenures.sort(key=lambda t: t[0])
    pairs = 0
    for i, (start, _end, t) in enumerate(tenures):
        lease = leases.get(str(t.lease))
        if t.outcome != OK or lease is None:
            continue
        belief, basis = lease.promised()
        for r in lease.of(REVOKE):
            belief = min(belief, r.invoke)
        for _s2, _e2, t2 in tenures[i + 1:]:
            if t2.outcome != OK or t2.complete is None:
                continue
            pairs += 1
            if t2.complete < belief:
                result.fail(
                    f"election: {t2.process} took the key (answered at {t2.complete:.3f}, {t2}) while "
                    f"{t.process} still held it by lease {t.lease} until {belief:.3f} ({basis})"
                )
    result.info["belief_pairs_checked"] = pairs


def lease_observations(ops: Sequence[Op]) -> int:
    """How many watch calls reported a lease's end (for the run summary)."""
    return sum(1 for o in ops if o.kind == WATCH and any(
        e.op == "del" and e.path.startswith(LEASE_DIR) for e in o.events or ()))
