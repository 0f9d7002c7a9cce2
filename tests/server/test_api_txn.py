"""POST /v1/txn (SPEC §10) on a one-member node, in memory: the body's
checks before anything is proposed, each error with its status, reads and
watches around a transaction's one rev, and candidates racing for a key."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq

from apiutil import Harness, Reply
from doozer.node import build_node
from doozer.server.config import Config
from doozer.server.http.api import API
from doozer.server.http.txn import BODY_SLACK


@pytest.fixture
def h() -> Harness:
    return Harness()


def txn(h: Harness, doc: Any, **headers: str) -> Reply:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return h.call("POST", "/v1/txn", body, **headers)


def files(h: Harness, rev: int | None = None) -> dict[str, Any]:
    query = f"&rev={rev}" if rev else ""
    return {f["path"]: (f["rev"], f["value"]) for f in h.get(f"/v1/walk?glob=/t/**{query}").json["files"]}


def test_a_txn_answers_its_rev_and_applies_every_op_at_it(h: Harness) -> None:
    h.put("/t/old", b"x")
    reply = txn(h, {"compare": [{"path": "/t/leader", "rev": 0}],
                    "ops": [{"op": "set", "path": "/t/leader", "value": "n1"},
                            {"op": "set", "path": "/t/bin", "value": "AP8=", "encoding": "base64"},
                            {"op": "del", "path": "/t/old"}]})
    assert reply.code == 200 and reply.json == {"rev": h.node.store.rev}
    rev = reply.json["rev"]
    assert reply.header("X-Doozer-Rev") == str(rev)
    assert files(h) == {"/t/leader": (rev, "n1"), "/t/bin": (rev, "AP8=")}
    assert h.get("/v1/store/t/bin?raw=1").body == b"\x00\xff"


def test_a_read_at_n_minus_one_sees_none_of_it_and_at_n_all(h: Harness) -> None:
    before = h.put("/t/a", b"0").json["rev"]
    rev = txn(h, {"ops": [{"op": "set", "path": "/t/a", "value": "1"},
                          {"op": "set", "path": "/t/b", "value": "1"}]}).json["rev"]
    assert files(h, rev - 1) == {"/t/a": (before, "0")}
    assert files(h, rev) == {"/t/a": (rev, "1"), "/t/b": (rev, "1")}


def test_a_watcher_gets_all_of_a_txn_in_one_response_even_with_limit_one(h: Harness) -> None:
    start = h.node.store.rev + 1
    held = h.start("GET", f"/v1/watch?glob=/t/**&rev={start}&limit=1", settle=False)
    rev = txn(h, {"ops": [{"op": "set", "path": f"/t/{i}", "value": ""} for i in range(5)]}).json["rev"]
    h.settle()
    assert held and held[0].code == 200
    events = held[0].json["events"]
    assert [(e["rev"], e["path"]) for e in events] == [(rev, f"/t/{i}") for i in range(5)]
    assert held[0].json["next"] == rev + 1
    # and from the history window, after the fact
    later = h.get(f"/v1/watch?glob=/t/**&rev={start}&limit=2").json
    assert len(later["events"]) == 5 and later["next"] == rev + 1


def test_a_failed_compare_is_409_with_index_path_and_rev(h: Harness) -> None:
    current = h.put("/t/leader", b"n0").json["rev"]
    reply = txn(h, {"compare": [{"path": "/t/free", "rev": 0}, {"path": "/t/leader", "rev": 0}],
                    "ops": [{"op": "set", "path": "/t/leader", "value": "n1"}]})
    assert reply.code == 409
    body = reply.json
    assert {k: body[k] for k in ("error", "index", "path", "rev", "in")} == {
        "error": "REV_MISMATCH", "index": 1, "path": "/t/leader", "rev": current, "in": "compare"}
    assert body["detail"]
    assert files(h) == {"/t/leader": (current, "n0")}
    assert h.node.store.rev == current + 1  # the attempt took a rev


@pytest.mark.parametrize("ops, status, code, index", [
    ([{"op": "del", "path": "/t/missing"}], 404, "NOENT", 0),
    ([{"op": "set", "path": "/t/f", "value": ""}, {"op": "set", "path": "/t/f/g", "value": ""}],
     409, "NOTDIR", 1),
    ([{"op": "set", "path": "/t", "value": ""}], 409, "ISDIR", 0),
    ([{"op": "set", "path": "/t/l", "value": "", "lease": "L7"}], 404, "NOENT", 0),
])
def test_a_failing_op_is_its_error_with_its_index(h: Harness, ops: list, status: int, code: str,
                                                  index: int) -> None:
    h.put("/t/keep", b"k")
    before = files(h)
    reply = txn(h, {"ops": ops})
    assert (reply.code, reply.json["error"], reply.json["index"], reply.json["in"]) == (
        status, code, index, "ops")
    assert reply.json["path"] == ops[index]["path"]
    assert files(h) == before


def test_an_empty_txn_takes_a_rev(h: Harness) -> None:
    before = h.node.store.rev
    assert txn(h, {}).json == {"rev": before + 1}


BAD_ARG = [
    b"",
    b"not json",
    b"\xff\xfe{}",
    b"[]",
    b'"ops"',
    b'{"ops": [], "ops": []}',
    b"[" * 15000 + b"]" * 15000,
    b'{"compare": [{"path": "/t/a", "rev": 1' + b"0" * 5000 + b"}]}",
    {"ops": [], "extra": 1},
    {"ops": {}},
    {"compare": "nope"},
    {"compare": [["/t/a", 0]]},
    {"compare": [{"path": "/t/a"}]},
    {"compare": [{"path": "/t/a", "rev": 0, "x": 1}]},
    {"compare": [{"path": 5, "rev": 0}]},
    {"compare": [{"path": "/t/a", "rev": "0"}]},
    {"compare": [{"path": "/t/a", "rev": 1.0}]},
    {"compare": [{"path": "/t/a", "rev": True}]},
    {"compare": [{"path": "/t/a", "rev": -2}]},
    {"compare": [{"path": "/t/a", "rev": 2**64}]},
    {"ops": [{"op": "put", "path": "/t/a", "value": ""}]},
    {"ops": [{"path": "/t/a", "value": ""}]},
    {"ops": ["set"]},
    {"ops": [{"op": "set", "path": "/t/a"}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": 5}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": None}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": "", "rev": 0}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": "x", "encoding": "hex"}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": "x", "encoding": None}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": "!!!", "encoding": "base64"}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": "é", "encoding": "base64"}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": "\ud800"}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": "", "lease": 7}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": "", "lease": "no spaces"}]},
    {"ops": [{"op": "del", "path": "/t/a", "value": ""}]},
    {"ops": [{"op": "del", "path": ["/t/a"]}]},
    {"ops": [{"op": "set", "path": "/t/a", "value": ""}, {"op": "del", "path": "/t/a"}]},
    {"ops": [{"op": "set", "path": f"/t/{i}", "value": ""} for i in range(129)]},
    {"compare": [{"path": "/t/a", "rev": 0}] * 129},
]


@pytest.mark.parametrize("doc", BAD_ARG)
def test_a_malformed_body_is_bad_arg_before_anything_is_proposed(h: Harness, doc: Any) -> None:
    before = h.node.store.rev
    reply = txn(h, doc)
    assert (reply.code, reply.json["error"]) == (400, "BAD_ARG"), reply.json
    assert h.node.store.rev == before and h.node.admission.state()["pending"] == 0


def test_the_limits_themselves_are_allowed(h: Harness) -> None:
    """128 ops and 128 compares (each path once among the ops) are fine."""
    reply = txn(h, {"compare": [{"path": "/t/c", "rev": -1}] * 128,
                    "ops": [{"op": "set", "path": f"/t/{i}", "value": ""} for i in range(128)]})
    assert reply.code == 200


@pytest.mark.parametrize("doc, index, where", [
    ({"compare": [{"path": "t/a", "rev": 0}]}, 0, "compare"),
    ({"compare": [{"path": "/t/a/", "rev": 0}]}, 0, "compare"),
    ({"ops": [{"op": "set", "path": "/t/a", "value": ""}, {"op": "del", "path": "/t//b"}]}, 1, "ops"),
    ({"ops": [{"op": "set", "path": "/t/../a", "value": ""}]}, 0, "ops"),
    ({"ops": [{"op": "set", "path": "/" + "x" * 256, "value": ""}]}, 0, "ops"),
])
def test_a_bad_path_is_bad_path_with_its_index(h: Harness, doc: Any, index: int, where: str) -> None:
    before = h.node.store.rev
    reply = txn(h, doc)
    assert (reply.code, reply.json["error"], reply.json["index"], reply.json["in"]) == (
        400, "BAD_PATH", index, where)
    assert h.node.store.rev == before


def test_a_write_clients_may_not_make_is_forbidden_before_proposing(h: Harness) -> None:
    before = h.node.store.rev
    for path in ("/ctl/name", "/ctl/cal/1", "/ctl/lease/L1"):
        reply = txn(h, {"ops": [{"op": "set", "path": path, "value": ""}]})
        assert (reply.code, reply.json["error"], reply.json["index"]) == (403, "FORBIDDEN", 0), path
    assert h.node.store.rev == before


def test_a_body_over_max_value_plus_4k_is_too_large(h: Harness) -> None:
    limit = h.node.max_value + BODY_SLACK
    head, tail = b'{"ops": [{"op": "set", "path": "/t/a", "value": "', b'"}]}'
    before = h.node.store.rev
    over = txn(h, head + b"x" * (limit + 1 - len(head) - len(tail)) + tail)
    assert (over.code, over.json["error"]) == (413, "TOO_LARGE")
    # within the body's limit, but one value over --max-value
    value = txn(h, head + b"x" * (h.node.max_value + 1) + tail)
    assert (value.code, value.json["error"], value.json["index"]) == (413, "TOO_LARGE", 0)
    assert h.node.store.rev == before
    fits = txn(h, head + b"x" * h.node.max_value + tail)
    assert fits.code == 200


def test_only_post(h: Harness) -> None:
    for method in ("GET", "PUT", "DELETE"):
        reply = h.call(method, "/v1/txn", b"{}")
        assert (reply.code, reply.json["error"]) == (405, "METHOD_NOT_ALLOWED")


def test_a_txn_needs_the_read_write_secret_and_auth_comes_first() -> None:
    h = Harness(rw=b"rw", ro=b"ro")
    assert txn(h, b"not json").code == 401
    assert txn(h, b"not json", Authorization="Bearer ro").code == 403
    assert txn(h, b"not json", Authorization="Bearer rw").code == 400
    assert txn(h, {"ops": []}, Authorization="Bearer rw").code == 200


def test_a_non_member_answers_readonly() -> None:
    h = Harness()
    lonely = build_node(Config(pulse=0), h.clock, "LONELY", rng=random.Random(1))
    stub = StubTreq(API(lonely).resource())
    out: list = []
    stub.post("http://doozer/v1/txn", data=b'{"ops": []}').addCallback(
        lambda r: r.json().addCallback(lambda body: out.append((r.code, body))))
    stub.flush()
    assert out[0][0] == 503 and out[0][1]["error"] == "READONLY"


def test_twenty_candidates_racing_for_leader_elect_exactly_one(h: Harness) -> None:
    """All 20 are sent before any is decided: one 200, nineteen 409
    REV_MISMATCH naming compare 0 and the winner's rev."""
    replies = []
    for k in range(20):
        body = json.dumps({"compare": [{"path": "/t/leader", "rev": 0}],
                           "ops": [{"op": "set", "path": "/t/leader", "value": f"c{k}"}]}).encode()
        replies.append(h.start("POST", "/v1/txn", body, settle=False))
    h.settle()
    got = [r[0] for r in replies]
    won = [k for k, r in enumerate(got) if r.code == 200]
    assert len(won) == 1, [r.json for r in got]
    rev = got[won[0]].json["rev"]
    for k, r in enumerate(got):
        if k != won[0]:
            assert r.code == 409
            assert {x: r.json[x] for x in ("error", "index", "path", "rev", "in")} == {
                "error": "REV_MISMATCH", "index": 0, "path": "/t/leader", "rev": rev, "in": "compare"}
    assert h.get("/v1/store/t/leader").json["value"] == f"c{won[0]}"


# -- fuzz: hostile bodies -------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["/t/a", "/t/b", "/t/a/b", "/ctl/cal/1", "t//", "set", "del", "base64", "AAE="]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["compare", "ops", "op", "path", "rev", "value", "encoding",
                                       "lease", "x"]), children, max_size=5),
    max_leaves=20,
)
_op = st.fixed_dictionaries(
    {"op": st.sampled_from(["set", "del", "put"]), "path": st.sampled_from(["/t/a", "/t/b", "/t/a/b", "/t//c"])},
    optional={"value": st.sampled_from(["", "v", "AAE=", "!"]), "encoding": st.sampled_from(["base64", "x"]),
              "lease": st.sampled_from(["L1", ""])},
)
_txn = st.fixed_dictionaries({}, optional={
    "compare": st.lists(st.fixed_dictionaries({"path": st.sampled_from(["/t/a", "/t/b", "/t"]),
                                               "rev": st.integers(-2, 20)}), max_size=3),
    "ops": st.lists(_op, max_size=4),
})
_body = (_json.map(lambda d: json.dumps(d).encode()) | _txn.map(lambda d: json.dumps(d).encode())
         | st.binary(max_size=64))


@settings(max_examples=300, deadline=None)
@given(st.lists(_body, min_size=1, max_size=4))
def test_fuzz_hostile_bodies_never_500_and_only_a_200_changes_the_store(bodies: list[bytes]) -> None:
    h = Harness()
    h.put("/t/a", b"0")
    for body in bodies:
        before, rev_before = files(h), h.node.store.rev
        reply = txn(h, body)
        assert reply.code != 500, (body, reply.body)
        assert reply.json.get("error") != "OTHER", (body, reply.body)
        if reply.code == 200:
            assert reply.json["rev"] == h.node.store.rev
            continue
        assert files(h) == before, (body, reply.json)
        if reply.code in (400, 403, 413):
            assert h.node.store.rev == rev_before, (body, reply.json)  # never proposed
            continue
        assert reply.code in (404, 409), (body, reply.json)
        assert reply.json["in"] in ("compare", "ops") and isinstance(reply.json["index"], int)
