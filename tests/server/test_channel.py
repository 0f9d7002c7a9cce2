"""The client port's HTTP channel (llhttp through httptools) and the lean
requests of the direct routes: HTTP/1.1's framing and its corners.

In memory: a one-member node behind its API port's sniffer (``limitsutil``),
raw bytes in, raw bytes out. The lean answers are also compared, byte for
byte, with twisted.web's answers to the same requests (the site with its
direct routes turned off), so that the two paths cannot drift apart.
"""

from __future__ import annotations

import json
import re

import pytest

from doozer.server.http.lean import LeanRequest
from doozer.server.http.site import CappedRequest
from limitsutil import Conn, Front, answers, http

REV = http("/v1/rev")


def statuses(data: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]


def put(path: str, body: bytes, **headers: str) -> bytes:
    return http(f"/v1/store{path}", "PUT", Content_Length=str(len(body)), **headers) + body


@pytest.fixture
def f() -> Front:
    return Front()


def served(f: Front, data: bytes, direct: bool = True) -> tuple[bytes, Conn]:
    if not direct:
        f.site.direct = None  # every request through twisted.web and Klein
    c = f.connect()
    assert c is not None
    c.send(data)
    f.settle()
    return c.read(), c


# ----------------------------------------------------------------------
# which request serves what


def test_store_and_watch_are_served_lean_everything_else_by_twisted_web(
        f: Front, monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct routes get a LeanRequest; other endpoints, and odd URLs of
    the direct ones, a twisted.web request (Klein routes them)."""
    kinds: list[str] = []
    lean_start, capped_start = LeanRequest.start, CappedRequest.start
    monkeypatch.setattr(LeanRequest, "start", lambda r: (kinds.append("lean"), lean_start(r))[1])
    monkeypatch.setattr(CappedRequest, "start", lambda r: (kinds.append("tw"), capped_start(r))[1])
    data, _ = served(f, put("/a", b"1") + http("/v1/store/a") + http("/v1/watch?glob=/**&rev=1")
                     + REV + http("/v1/store/a/") + http("/v1/store/%61") + http("/v1/stat/a"))
    assert statuses(data) == [200, 200, 200, 200, 400, 200, 200]  # a/ is BAD_PATH
    assert kinds == ["lean", "lean", "lean", "tw", "tw", "tw", "tw"]


REQUESTS = [
    put("/a", b"hello"),
    http("/v1/store/a"),
    http("/v1/store/a", "HEAD"),
    http("/v1/store/a?raw=1"),
    http("/v1/store/a", Accept="application/octet-stream"),
    http("/v1/store/"),
    http("/v1/store/nope"),
    http("/v1/store/a?rev=x"),
    http("/v1/store/a?rev=1&rev=2"),
    http("/v1/store/l?rev=0&lease=%C3%A9", "PUT", Content_Length="1") + b"x",
    http("/v1/store/a?raw&rev=&x=%ff"),
    http("/v1/store/a", "POST", Content_Length="0"),
    http("/v1/store/ctl/x", "PUT", Content_Length="1") + b"x",
    http("/v1/store/a", "DELETE"),
    http("/v1/watch?glob=/**&rev=1"),
    http("/v1/watch"),
    http("/v1/watch?glob=/**&rev=1", "HEAD"),
    http("/v1/store/b", "PUT", Transfer_Encoding="chunked") + b"3\r\nabc\r\n0\r\n\r\n",
    http("/v1/store/b", "PUT", Expect="100-continue", Content_Length="2") + b"hi",
    http("/v1/store/b", Connection="close"),
]


@pytest.mark.parametrize("hosts", [None, {}, {"cors_origins": ["http://app.example"]}])
def test_lean_answers_are_twisted_webs_byte_for_byte(hosts: dict | None) -> None:
    """Pipelined on one connection, every request is answered with the
    same bytes by the lean path as by twisted.web (but the Date)."""
    extra = [http("/v1/store/a", host="evil.example:80"),
             http("/v1/store/a", Origin="http://evil.example"),
             http("/v1/store/a", Origin="http://app.example"),
             http("/v1/store/a", "OPTIONS", Origin="http://app.example",
                  Access_Control_Request_Method="GET")]
    data = b"".join(extra + REQUESTS)
    outs = []
    for direct in (True, False):
        out, c = served(Front(hosts=hosts), data, direct)
        outs.append(re.sub(rb"Date: [^\r]*", b"Date: -", out))
        assert c.closed  # the last request asked to close
    assert outs[0] == outs[1]
    assert len(statuses(outs[0])) == len(REQUESTS) + len(extra) + 1  # and one 100 Continue


def test_secrets_on_the_lean_path_as_on_twisted_webs() -> None:
    """401 without the secret, 403 for a write with the read-only one: same bytes."""
    data = http("/v1/store/a") + http("/v1/store/a", Authorization="Bearer wrong") + put(
        "/a", b"x", Authorization="Bearer ro") + put("/a", b"x", Authorization="Bearer rw")
    outs = []
    for direct in (True, False):
        f = Front(rw=b"rw")
        f.native.secrets.ro = f.site.resource._api.secrets.ro = b"ro"
        out, _ = served(f, data, direct)
        outs.append(re.sub(rb"Date: [^\r]*", b"Date: -", out))
    assert outs[0] == outs[1]
    assert statuses(outs[0]) == [401, 401, 403, 200]


# ----------------------------------------------------------------------
# HTTP/1.1's framing


def test_keep_alive_serves_requests_one_after_another(f: Front) -> None:
    c = f.connect()
    for i in range(5):
        c.send(put(f"/k{i}", b"v%d" % i))
        f.settle()
    c.send(http("/v1/store/k3"))
    f.settle()
    got = answers(c.read())
    assert [a[0] for a in got] == [200] * 6 and not c.closed
    assert json.loads(got[-1][2])["value"] == "v3"


def test_pipelined_requests_are_answered_in_order(f: Front) -> None:
    """Writes, reads and watches sent at once: each answered in turn."""
    data, _ = served(f, put("/p/a", b"1") + http("/v1/store/p/a") + REV + put("/p/a", b"2")
                     + http("/v1/store/p/a") + http("/v1/watch?glob=/p/**&rev=1"))
    got = answers(data)
    assert [a[0] for a in got] == [200] * 6
    bodies = [json.loads(a[2]) for a in got]
    assert bodies[1]["value"] == "1" and bodies[4]["value"] == "2"
    assert [e["value"] for e in bodies[5]["events"]] == ["1", "2"]


def test_http_10_is_answered_in_10_and_closed(f: Front) -> None:
    data, c = served(f, b"GET /v1/store/ HTTP/1.0\r\n\r\n" + REV)
    assert data.startswith(b"HTTP/1.0 200 OK\r\n") and statuses(data) == [200]
    assert c.closed  # the request after it is dropped, as twisted.web drops it


def test_connection_close_is_said_back_and_honoured(f: Front) -> None:
    data, c = served(f, http("/v1/store/", Connection="close") + REV)
    got = answers(data)
    assert len(got) == 1 and got[0][1]["connection"] == "close" and c.closed


def test_an_upgrade_is_answered_then_the_connection_closes(f: Front) -> None:
    """This node upgrades to nothing (no websocket, no h2c): the request is
    answered as any other, and the bytes after it, in another protocol, are
    never parsed as HTTP."""
    data, c = served(f, http("/v1/store/", Connection="Upgrade", Upgrade="websocket")
                     + b"\x81\x05hello" + REV)
    assert statuses(data) == [200] and c.closed


def test_head_has_the_length_of_the_get_and_no_body(f: Front) -> None:
    data, _ = served(f, put("/h", b"x" * 50) + http("/v1/store/h", "HEAD") + http("/v1/store/h"))
    _, head, get = answers(data, heads=(1,))
    assert head[2] == b"" and head[1]["content-length"] == get[1]["content-length"] != "0"
    assert head[1]["x-doozer-rev"] == get[1]["x-doozer-rev"]


def test_expect_100_continue_is_answered_before_the_body(f: Front) -> None:
    c = f.connect()
    c.send(http("/v1/store/e", "PUT", Expect="100-continue", Content_Length="3"))
    assert c.read() == b"HTTP/1.1 100 Continue\r\n\r\n"
    c.send(b"abc")
    f.settle()
    assert statuses(c.read()) == [100, 200]
    assert f.node.store.get("/e").value == b"abc"


def test_expect_100_continue_behind_a_held_request_waits_its_turn(f: Front) -> None:
    """A 100 Continue is never sent into the middle of an earlier answer."""
    c = f.connect()
    c.send(http("/v1/watch?glob=/w/**&rev=7")
           + http("/v1/store/e", "PUT", Expect="100-continue", Content_Length="3"))
    assert c.read() == b""
    f.node.set("/w/x", b"1")
    f.settle()
    data = c.read()
    assert statuses(data) == [200, 100]
    c.send(b"abc")
    f.settle()
    assert statuses(c.read()) == [200, 100, 200]


def test_chunked_body_in_pieces(f: Front) -> None:
    c = f.connect()
    c.send(http("/v1/store/c", "PUT", Transfer_Encoding="chunked") + b"5\r\nhel")
    f.settle()
    assert c.read() == b""
    c.send(b"lo\r\n6\r\n, chun\r\n")
    c.send(b"3\r\nked\r\n0\r\n\r\n")
    f.settle()
    assert statuses(c.read()) == [200]
    assert f.node.store.get("/c").value == b"hello, chunked"


def test_slow_client_a_byte_at_a_time(f: Front) -> None:
    c = f.connect()
    for i, byte in enumerate(put("/s", b"slowly") + http("/v1/store/s")):
        c.send(bytes([byte]))
    f.settle()
    got = answers(c.read())
    assert [a[0] for a in got] == [200, 200] and json.loads(got[1][2])["value"] == "slowly"


def test_body_over_the_cap_is_refused_while_reading(f: Front) -> None:
    """A Content-Length past --max-body is TOO_LARGE, on the lean path, with
    nothing of it buffered."""
    c = f.connect()
    c.send(http("/v1/store/big", "PUT", Content_Length=str(10 * 32768)))
    request = c.protocol.requests[0]
    assert isinstance(request, LeanRequest) and request.doozer_too_large
    for _ in range(10):
        c.send(b"x" * 32768)
        assert request.content.tell() == 0
    f.settle()
    got = answers(c.read())
    assert got[0][0] == 413 and json.loads(got[0][2])["error"] == "TOO_LARGE"
    assert "big" not in f.node.store.getdir("/")


# ----------------------------------------------------------------------
# malformed requests: 400 and close


@pytest.mark.parametrize("data", [
    b"\xff\xfe garbage\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\n\r\n",
    b"GET /v1/rev HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"GET /v1/rev HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"PUT /v1/store/a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"PUT /v1/store/a HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    b"PUT /v1/store/a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"PUT /v1/store/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /v1/rev HTTP/0.9\r\n\r\n",
    b"GET /v1/rev\r\n\r\n",
    http("/v1/rev", X_Big="x" * 17000),
    b"GET /v1/rev HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(501)) + b"\r\n",
])
def test_malformed_requests_are_answered_400_and_closed(f: Front, data: bytes) -> None:
    out, c = served(f, data)
    assert statuses(out) == [400] and c.closed


def test_many_pipelined_requests_in_large_reads_cut_mid_head(f: Front) -> None:
    """Reads larger than the head limit, each ending inside a request's
    head: every request is served (only one head's own bytes count against
    the limit, not the read it ends in)."""
    data = REV * 1000
    c = f.connect()
    for at in range(0, len(data), 20011):
        c.send(data[at:at + 20011])
        f.settle()
    assert statuses(c.read()) == [200] * 1000 and not c.closed


def test_a_head_growing_without_end_is_cut_at_the_limit(f: Front) -> None:
    """A header line that never ends is refused once past the head limit,
    not buffered on (the parser holds a line until it ends)."""
    c = f.connect()
    c.send(b"GET /v1/rev HTTP/1.1\r\nX-Long: ")
    sent = 0
    while not c.closed and sent < 100:
        c.send(b"y" * 1024)
        sent += 1
    assert c.closed and sent <= 18
    assert statuses(c.read()) == [400]


def test_a_bad_request_after_good_ones_is_answered_in_its_turn(f: Front) -> None:
    data, c = served(f, REV + http("/v1/store/") + b"BAD REQUEST\r\n\r\n" + REV)
    assert statuses(data) == [200, 200, 400] and c.closed


def test_a_bad_request_behind_a_held_watch_waits_for_it(f: Front) -> None:
    c = f.connect()
    c.send(http("/v1/watch?glob=/w/**&rev=7") + b"\x01\x02\r\n\r\n")
    f.settle()
    assert c.read() == b"" and not c.closed
    f.node.set("/w/x", b"1")
    f.settle()
    assert statuses(c.read()) == [200, 400] and c.closed


# ----------------------------------------------------------------------
# Twisted's inactivity timer (60 s), under the deadlines


def test_inactivity_timer_spares_a_held_request_and_runs_after_it() -> None:
    """With deadlines off, a watch held past Twisted's 60 s keeps its
    connection; after the answer, 60 s without a byte closes it."""
    f = Front(request_timeout=0)
    c = f.connect()
    c.send(http("/v1/watch?glob=/w/**&rev=7&timeout=300"))
    f.clock.advance(150)
    assert not c.closed and c.read() == b""
    f.node.set("/w/x", b"1")
    f.settle()
    assert statuses(c.read()) == [200]
    f.clock.advance(59)
    c.send(REV)  # a byte moves the timer on
    f.clock.advance(59)
    assert statuses(c.read()) == [200, 200] and not c.closed
    f.clock.advance(2)
    assert c.closed
