"""The fault suite's record (tests/faults/history.py): JSON-lines round
trips, and how the recorder classifies answers."""

from __future__ import annotations

import itertools

import pytest

from .histories import get, op, put, watch_call
from .history import (CAS, DELETE, FAIL, INDETERMINATE, OK, READ, SET, WATCH, Event, History,
                      NodeLog, Recorder)


# ---------------------------------------------------------------------------
# History records
# ---------------------------------------------------------------------------


def test_history_round_trips_through_json_lines(tmp_path) -> None:
    """save/load keeps ops (binary values included), watch events, logs and initial state."""
    ops = [
        put("/a", 0.5, 1.25, "x", 3),
        op(SET, "/b", 1, None, INDETERMINATE, value=b"\xff\x00bin", prec=4),
        get("/a", 2, 3, None),
        watch_call("/**", 1, [Event(3, "/a", "set", "x"), Event(4, "/a", "del")], 5, 4),
    ]
    hist = History(ops, [NodeLog("n1", [Event(3, "/a", "set", b"\x80")], 1, 3)], {"/c": (b"init", 1)}, start_rev=2)
    path = tmp_path / "h.jsonl"
    hist.save(path)
    back = History.load(path)
    assert back == hist


def test_recorder_classifies_http_answers() -> None:
    """2xx is ok, 4xx a definite failure (with REV_MISMATCH's rev), 5xx and no answer indeterminate."""
    clock = itertools.count()
    rec = Recorder(clock=lambda: float(next(clock)))
    a = rec.from_http(rec.invoke(1, SET, "/a", value="x"), 200, {"path": "/a", "rev": 7})
    b = rec.from_http(rec.invoke(1, CAS, "/a", value="y", prec=2), 409, {"error": "REV_MISMATCH", "rev": 7})
    c = rec.from_http(rec.invoke(1, SET, "/a", value="z"), 503, {"error": "UNAVAILABLE", "indeterminate": True})
    d = rec.from_http(rec.invoke(1, SET, "/a", value="z"), None, None)
    e = rec.from_http(rec.invoke(1, READ, "/a"), 200, {"path": "/a", "rev": 7, "value": "/w==", "encoding": "base64"})
    f = rec.from_http(rec.invoke(1, READ, "/a"), 404, {"error": "NOENT"})
    w = rec.from_http(
        rec.invoke(1, WATCH, "/**", prec=1), 200, {"events": [{"rev": 7, "path": "/a", "op": "set", "value": "x"}], "next": 8}
    )
    pending = rec.invoke(2, DELETE, "/a")
    assert (a.outcome, a.rev) == (OK, 7)
    assert (b.outcome, b.code, b.rev) == (FAIL, "REV_MISMATCH", 7)
    assert c.outcome == d.outcome == INDETERMINATE
    assert (e.value, e.rev) == (b"\xff", 7)
    assert (f.outcome, f.code) == (FAIL, "NOENT")
    assert w.events == [Event(7, "/a", "set", "x")] and w.rev == 8
    hist = rec.history()
    assert hist.ops[-1] is pending and pending.complete is None and pending.outcome == INDETERMINATE
    assert a.invoke < a.complete < b.invoke


def test_recorder_refuses_double_completion() -> None:
    """Completing an op twice is a harness bug and raises."""
    rec = Recorder()
    o = rec.invoke(1, SET, "/a", value="x")
    rec.ok(o, rev=3)
    with pytest.raises(ValueError):
        rec.ok(o, rev=4)
