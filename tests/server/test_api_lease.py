"""The lease endpoints of SPEC §9 on a one-member node, in memory: each verb's
answer, each error with its status, secrets, and ``PUT ?lease=``."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from treq.testing import StubTreq

from apiutil import Harness, Reply
from doozer.node import build_node
from doozer.node.leases import CHECK_EVERY, DRIFT
from doozer.server.config import Config
from doozer.server.http.api import API


@pytest.fixture
def h() -> Harness:
    return Harness()


def grant(h: Harness, body: Any, **headers: str) -> Reply:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return h.call("POST", "/v1/lease", data, **headers)


def test_grant_answers_id_ttl_and_rev_and_the_lease_shows_in_ctl(h: Harness) -> None:
    reply = grant(h, {"ttl": 30})
    assert reply.code == 200, reply.body
    body = reply.json
    assert set(body) == {"id", "ttl", "rev"} and body["ttl"] == 30
    assert len(body["id"]) == 16 and body["rev"] == h.node.store.rev
    ctl = h.get(f"/v1/store/ctl/lease/{body['id']}")
    assert ctl.code == 200 and json.loads(ctl.json["value"]) == {"ttl": 30}


@pytest.mark.parametrize("body", [
    {"ttl": 0}, {"ttl": 3601}, {"ttl": 1.5}, {"ttl": "10"}, {}, {"ttl": 5, "x": 1}, [5],
    b"not json", b"\xff", b'{"ttl": 5' + b" " * 2000 + b"}",
])
def test_a_bad_grant_body_is_bad_arg_and_proposes_nothing(h: Harness, body: Any) -> None:
    rev = h.node.store.rev
    reply = grant(h, body)
    assert (reply.code, reply.json["error"]) == (400, "BAD_ARG")
    assert h.node.store.rev == rev


def test_keepalive_answers_id_and_ttl_and_takes_no_rev(h: Harness) -> None:
    lease_id = grant(h, {"ttl": 10}).json["id"]
    rev = h.node.store.rev
    reply = h.call("POST", f"/v1/lease/{lease_id}/keepalive")
    assert reply.code == 200 and reply.json == {"id": lease_id, "ttl": 10}
    assert h.node.store.rev == rev
    assert reply.header("X-Doozer-Rev") is None or int(reply.header("X-Doozer-Rev")) == rev


def test_a_file_put_with_a_lease_is_listed_and_goes_with_the_revoke(h: Harness) -> None:
    lease_id = grant(h, {"ttl": 10}).json["id"]
    assert h.put("/svc/a", b"1", lease=lease_id).code == 200
    assert h.put("/svc/b", b"2", lease=lease_id).code == 200
    assert h.put("/svc/c", b"3").code == 200
    assert h.get(f"/v1/lease/{lease_id}").json == {"id": lease_id, "ttl": 10,
                                                   "files": ["/svc/a", "/svc/b"]}
    assert h.get("/v1/leases").json == {"leases": [{"id": lease_id, "ttl": 10,
                                                    "files": ["/svc/a", "/svc/b"]}]}
    reply = h.call("DELETE", f"/v1/lease/{lease_id}")
    assert reply.code == 200 and reply.json == {"id": lease_id, "rev": h.node.store.rev}
    rev = reply.json["rev"]
    for path in ("/svc/a", "/svc/b", f"/ctl/lease/{lease_id}"):
        assert h.get(f"/v1/store{path}").json["error"] == "NOENT"
    events = h.get(f"/v1/watch?glob=/svc/**&rev={rev}&timeout=1").json["events"]
    assert [(e["path"], e["rev"]) for e in events] == [("/svc/a", rev), ("/svc/b", rev)]
    assert h.get("/v1/store/svc/c").code == 200
    assert h.get("/v1/leases").json == {"leases": []}


def test_a_silent_lease_expires_and_its_files_go(h: Harness) -> None:
    lease_id = grant(h, {"ttl": 2}).json["id"]
    h.put("/svc/a", b"1", lease=lease_id)
    for _ in range(round((2 * DRIFT + CHECK_EVERY + 0.2) / 0.1)):
        h.clock.advance(0.1)
    assert h.get("/v1/store/svc/a").json["error"] == "NOENT"
    assert h.get(f"/v1/lease/{lease_id}").code == 404


def test_gone_leases_are_noent_for_every_verb(h: Harness) -> None:
    for method, url in (("POST", "/v1/lease/NOSUCH/keepalive"), ("DELETE", "/v1/lease/NOSUCH"),
                        ("GET", "/v1/lease/NOSUCH")):
        reply = h.call(method, url)
        assert (reply.code, reply.json["error"]) == (404, "NOENT"), (method, url)
    reply = h.put("/f", b"x", lease="NOSUCH")
    assert (reply.code, reply.json["error"]) == (404, "NOENT")
    assert "NOSUCH" in reply.json["detail"]


def test_bad_lease_ids_are_bad_arg(h: Harness) -> None:
    bad = "x" * 65
    for method, url in (("POST", f"/v1/lease/{bad}/keepalive"), ("DELETE", f"/v1/lease/{bad}"),
                        ("GET", f"/v1/lease/{bad}"), ("GET", "/v1/lease/a%20b")):
        reply = h.call(method, url)
        assert (reply.code, reply.json["error"]) == (400, "BAD_ARG"), (method, url)
    reply = h.put("/f", b"x", lease="a%2Fb")
    assert (reply.code, reply.json["error"]) == (400, "BAD_ARG")


def test_wrong_methods_are_refused(h: Harness) -> None:
    for method, url in (("GET", "/v1/lease"), ("PUT", "/v1/lease/X"),
                        ("GET", "/v1/lease/X/keepalive"), ("POST", "/v1/leases")):
        reply = h.call(method, url)
        assert (reply.code, reply.json["error"]) == (405, "METHOD_NOT_ALLOWED"), (method, url)


def test_lease_writes_need_the_read_write_secret_and_reads_the_read_one() -> None:
    h = Harness(rw=b"rw", ro=b"ro")
    assert grant(h, {"ttl": 5}).code == 401
    assert grant(h, {"ttl": 5}, Authorization="Bearer ro").code == 403
    reply = grant(h, {"ttl": 5}, Authorization="Bearer rw")
    assert reply.code == 200
    lease_id = reply.json["id"]
    assert h.call("POST", f"/v1/lease/{lease_id}/keepalive", Authorization="Bearer ro").code == 403
    assert h.call("POST", f"/v1/lease/{lease_id}/keepalive", Authorization="Bearer rw").code == 200
    assert h.get(f"/v1/lease/{lease_id}").code == 401
    assert h.get(f"/v1/lease/{lease_id}", Authorization="Bearer ro").code == 200
    assert h.get("/v1/leases", Authorization="Bearer ro").code == 200
    assert h.call("DELETE", f"/v1/lease/{lease_id}", Authorization="Bearer ro").code == 403
    assert h.call("DELETE", f"/v1/lease/{lease_id}", Authorization="Bearer rw").code == 200


def test_the_lease_writes_are_not_on_the_readonly_webview() -> None:
    h = Harness(readonly=True)
    assert grant(h, {"ttl": 5}).code == 405
    assert h.get("/v1/leases").code == 200


def test_a_non_member_answers_readonly_to_the_lease_verbs() -> None:
    h = Harness()
    lonely = build_node(Config(pulse=0), h.clock, "LONELY", rng=random.Random(1))
    stub = StubTreq(API(lonely).resource())
    out: list = []
    for method, url, body in (("POST", "/v1/lease", b'{"ttl": 5}'),
                              ("POST", "/v1/lease/X/keepalive", b""),
                              ("DELETE", "/v1/lease/X", b"")):
        stub.request(method, "http://doozer" + url, data=body).addCallback(
            lambda r: r.json().addCallback(lambda body: out.append((r.code, body["error"]))))
        stub.flush()
    assert out == [(503, "READONLY")] * 3


def test_a_keepalive_without_a_quorum_is_unavailable() -> None:
    h = Harness(write_timeout=2.0)
    lease_id = grant(h, {"ttl": 30}).json["id"]
    h.node.sequencer.propose = lambda item, now: None  # no quorum, as it were
    out = h.start("POST", f"/v1/lease/{lease_id}/keepalive")
    h.clock.advance(2.1)
    h.settle()
    assert (out[0].code, out[0].json["error"]) == (503, "UNAVAILABLE")
