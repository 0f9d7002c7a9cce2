"""doozerd's verbs (doozer/server/doozerd/protocol.py) against a one-member
node, in memory: GET/SET/DEL, REV/NOP/SELF/STAT, GETDIR/WALK, tags, unknown
verbs, ACCESS and READONLY, the same store as through HTTP, and seeded
random requests.

Every test drives :class:`doozer.server.doozerd.protocol.NativeProtocol` through a
``StringTransport`` with the spec-written client of ``nativeutil`` on the
node's Clock: no sockets, no reactor, deterministic.
"""

from __future__ import annotations

import base64
import json

import pytest
from twisted.internet.task import Clock

from apiutil import Harness
from doozer.server.doozerd import protocol as native
from doozer.server.config import Config
from doozer.server.doozerd.protocol import NativeFactory
from doozer.node import build_node
from nativeutil import SET, VERB, MemoryConn, Native, Request, encode, err


def test_get_missing_file_is_rev_zero_without_error(c: MemoryConn) -> None:
    """GET of a missing file answers rev 0, no value and no error."""
    r = c.call("GET", path="/nope")
    assert err(r) is None and r.rev == 0 and not r.HasField("value")


def test_set_then_get_returns_value_and_file_rev(c: MemoryConn) -> None:
    """SET answers the new file rev; GET answers that rev and the bytes."""
    r = c.call("SET", path="/a/b", rev=0, value=b"\x00\xffhi")
    assert err(r) is None and r.rev > 0
    g = c.call("GET", path="/a/b")
    assert (g.rev, g.value) == (r.rev, b"\x00\xffhi")


def test_set_with_empty_value_stores_an_empty_file(c: MemoryConn) -> None:
    """A SET without a value writes an empty file (value is optional, rev is not)."""
    r = c.call("SET", path="/empty", rev=-1)
    assert err(r) is None
    assert c.call("GET", path="/empty").value == b""
    assert c.call("STAT", path="/empty").len == 0


def test_get_directory_is_isdir(c: MemoryConn) -> None:
    """GET of a directory is ISDIR."""
    c.call("SET", path="/d/f", rev=-1, value=b"x")
    assert err(c.call("GET", path="/d")) == "ISDIR"
    assert err(c.call("GET", path="/")) == "ISDIR"


def test_get_at_an_old_rev_reads_the_old_value(c: MemoryConn) -> None:
    """GET with a rev reads the store as of that rev."""
    first = c.call("SET", path="/v", rev=-1, value=b"one").rev
    c.call("SET", path="/v", rev=-1, value=b"two")
    r = c.call("GET", path="/v", rev=first)
    assert (r.value, r.rev) == (b"one", first)
    assert c.call("GET", path="/v", rev=first - 1).rev == 0


def test_get_at_a_future_rev_waits_for_it(n: Native, c: MemoryConn) -> None:
    """GET at a rev the node has not reached answers once it gets there."""
    future = n.node.store.rev + 1
    tag = c.send(verb="GET", path="/later", rev=future)
    assert c.settle() == []
    other = n.conn()
    other.call("SET", path="/later", rev=-1, value=b"now")
    (r,) = c.settle()
    assert (r.tag, r.value, r.rev) == (tag, b"now", future)


def test_get_at_a_future_rev_times_out_as_other(n: Native, c: MemoryConn) -> None:
    """A read at a rev that never comes answers OTHER (TIMEOUT) after the read timeout."""
    c.send(verb="GET", path="/x", rev=n.node.store.rev + 100)
    n.clock.advance(native.READ_TIMEOUT)
    (r,) = c.settle()
    assert err(r) == "OTHER" and r.err_detail.startswith("TIMEOUT")


def test_get_older_than_history_is_too_late() -> None:
    """A read at a rev older than the kept history is TOO_LATE."""
    n = Native(hist=4)
    c = n.conn()
    for i in range(12):
        c.call("SET", path="/h", rev=-1, value=str(i).encode())
    assert n.node.store.oldest > 1
    assert err(c.call("GET", path="/h", rev=1)) == "TOO_LATE"


def test_set_preconditions_follow_doozerd(c: MemoryConn) -> None:
    """SET rev 0 creates only; rev R succeeds when the file rev <= R; else REV_MISMATCH."""
    created = c.call("SET", path="/p", rev=0, value=b"1").rev
    assert err(c.call("SET", path="/p", rev=0, value=b"2")) == "REV_MISMATCH"
    assert err(c.call("SET", path="/p", rev=created - 1, value=b"2")) == "REV_MISMATCH"
    assert err(c.call("SET", path="/p", rev=created, value=b"3")) is None
    assert err(c.call("SET", path="/p", rev=-1, value=b"4")) is None
    assert c.call("GET", path="/p").value == b"4"


def test_set_without_rev_is_missing_arg(c: MemoryConn) -> None:
    """SET needs a rev (MISSING_ARG), and a path."""
    assert err(c.call("SET", path="/x", value=b"v")) == "MISSING_ARG"
    assert err(c.call("SET", rev=-1, value=b"v")) == "MISSING_ARG"
    assert c.call("GET", path="/x").rev == 0


def test_set_over_a_directory_or_below_a_file(c: MemoryConn) -> None:
    """Writing where a directory is, is ISDIR; below a file, NOTDIR."""
    c.call("SET", path="/t/f", rev=-1, value=b"x")
    assert err(c.call("SET", path="/t", rev=-1, value=b"x")) == "ISDIR"
    assert err(c.call("SET", path="/t/f/g", rev=-1, value=b"x")) == "NOTDIR"


@pytest.mark.parametrize("path", ["a", "/a/", "//a", "/a/../b", "/a b", "/" + "x" * 256])
def test_bad_path_is_bad_path(c: MemoryConn, path: str) -> None:
    """A path that is not valid (SPEC §1) is BAD_PATH, for writes and reads."""
    assert err(c.call("SET", path=path, rev=-1, value=b"x")) == "BAD_PATH"
    assert err(c.call("GET", path=path)) == "BAD_PATH"


def test_path_that_is_not_utf8_is_bad_path(c: MemoryConn) -> None:
    """A path field carrying bytes that are not UTF-8 is BAD_PATH, not a closed connection."""
    body = Request(tag=3, verb=1).SerializeToString() + b"\x22\x02\xff\xfe"
    c.send_raw(len(body).to_bytes(4, "big") + body)
    (r,) = c.settle()
    assert (r.tag, err(r)) == (3, "BAD_PATH")


def test_writing_node_bookkeeping_is_other_forbidden(c: MemoryConn) -> None:
    """A client write under /ctl (but a CAL slot) is OTHER with FORBIDDEN in the detail."""
    r = c.call("SET", path="/ctl/name", rev=-1, value=b"x")
    assert err(r) == "OTHER" and r.err_detail.startswith("FORBIDDEN")


def test_value_over_max_value_is_other_too_large() -> None:
    """A value larger than --max-value is OTHER (TOO_LARGE); one of exactly that size is stored."""
    n = Native(max_value=100)
    c = n.conn()
    r = c.call("SET", path="/big", rev=-1, value=b"x" * 101)
    assert err(r) == "OTHER" and r.err_detail.startswith("TOO_LARGE")
    assert err(c.call("SET", path="/big", rev=-1, value=b"x" * 100)) is None


def test_del_answers_empty_and_removes_the_file(c: MemoryConn) -> None:
    """DEL answers an empty response; the file and its empty parents are gone."""
    rev = c.call("SET", path="/gone/f", rev=-1, value=b"x").rev
    r = c.call("DEL", path="/gone/f", rev=rev)
    assert err(r) is None and r.ListFields() == [(r.DESCRIPTOR.fields_by_name["tag"], r.tag)]
    assert c.call("GET", path="/gone/f").rev == 0
    assert c.call("STAT", path="/gone").rev == 0


def test_del_errors(c: MemoryConn) -> None:
    """DEL of a missing file is NOENT, with a stale rev REV_MISMATCH, without rev MISSING_ARG."""
    assert err(c.call("DEL", path="/none", rev=-1)) == "NOENT"
    rev = c.call("SET", path="/f", rev=-1, value=b"x").rev
    c.call("SET", path="/f", rev=-1, value=b"y")
    assert err(c.call("DEL", path="/f", rev=rev)) == "REV_MISMATCH"
    assert err(c.call("DEL", path="/f")) == "MISSING_ARG"


def test_rev_nop_self(n: Native, c: MemoryConn) -> None:
    """REV answers the store rev, NOP an empty response after taking a rev, SELF the node id."""
    before = c.call("REV").rev
    assert before == n.node.store.rev
    r = c.call("NOP")
    assert err(r) is None and not r.HasField("rev")
    assert c.call("REV").rev == before + 1
    assert c.call("SELF").value == n.node.id.encode()


def test_stat_file_directory_missing(c: MemoryConn) -> None:
    """STAT: a file's length and rev; a directory's entry count and rev -2; missing 0 and 0."""
    rev = c.call("SET", path="/s/f", rev=-1, value=b"12345").rev
    c.call("SET", path="/s/g/h", rev=-1, value=b"")
    f = c.call("STAT", path="/s/f")
    assert (f.len, f.rev) == (5, rev)
    d = c.call("STAT", path="/s")
    assert (d.len, d.rev) == (2, -2)
    m = c.call("STAT", path="/s/none")
    assert err(m) is None and (m.len, m.rev) == (0, 0)
    assert (c.call("STAT", path="/s", rev=rev).len, c.call("STAT", path="/s", rev=rev).rev) == (1, -2)


def test_getdir_by_offset_then_range(c: MemoryConn) -> None:
    """GETDIR answers the entry at offset in sorted order; past the end RANGE."""
    for name in ("c", "a", "b/x"):
        c.call("SET", path=f"/g/{name}", rev=-1, value=b"")
    rev = c.call("REV").rev
    names = [c.call("GETDIR", path="/g", rev=rev, offset=i).path for i in range(3)]
    assert names == ["a", "b", "c"]
    assert err(c.call("GETDIR", path="/g", rev=rev, offset=3)) == "RANGE"
    assert err(c.call("GETDIR", path="/g", rev=rev, offset=-1)) == "RANGE"
    assert c.call("GETDIR", path="/g", offset=0).path == "a"


def test_getdir_errors(c: MemoryConn) -> None:
    """GETDIR of a file is NOTDIR, of a missing path NOENT, without offset MISSING_ARG."""
    c.call("SET", path="/gf", rev=-1, value=b"")
    assert err(c.call("GETDIR", path="/gf", offset=0)) == "NOTDIR"
    assert err(c.call("GETDIR", path="/missing", offset=0)) == "NOENT"
    assert err(c.call("GETDIR", path="/")) == "MISSING_ARG"


def test_getdir_sees_the_directory_at_its_rev(c: MemoryConn) -> None:
    """GETDIR at an old rev lists the entries as they were then."""
    rev = c.call("SET", path="/gr/a", rev=-1, value=b"").rev
    c.call("SET", path="/gr/b", rev=-1, value=b"")
    assert err(c.call("GETDIR", path="/gr", rev=rev, offset=1)) == "RANGE"
    assert c.call("GETDIR", path="/gr", offset=1).path == "b"


def test_walk_by_offset_in_path_order(c: MemoryConn) -> None:
    """WALK answers the offset-th matching file (path, rev, value, flags 4); past the end RANGE."""
    revs = {}
    for path in ("/w/b", "/w/a/x", "/w/c", "/other"):
        revs[path] = c.call("SET", path=path, rev=-1, value=path.encode()).rev
    rev = c.call("REV").rev
    got = []
    for i in range(3):
        r = c.call("WALK", path="/w/**", rev=rev, offset=i)
        assert r.flags == SET
        got.append((r.path, r.rev, r.value))
    assert got == [(p, revs[p], p.encode()) for p in ("/w/a/x", "/w/b", "/w/c")]
    assert err(c.call("WALK", path="/w/**", rev=rev, offset=3)) == "RANGE"
    assert err(c.call("WALK", path="/w/**", offset=-1)) == "RANGE"
    assert err(c.call("WALK", path="/w/**")) == "MISSING_ARG"
    assert err(c.call("WALK", path="/w/[x]", offset=0)) == "BAD_PATH"


def test_walk_paging_sees_one_consistent_rev(c: MemoryConn) -> None:
    """Paging WALK at one rev is unaffected by writes made in between."""
    for p in ("/pg/a", "/pg/b"):
        c.call("SET", path=p, rev=-1, value=b"")
    rev = c.call("REV").rev
    assert c.call("WALK", path="/pg/*", rev=rev, offset=0).path == "/pg/a"
    c.call("SET", path="/pg/aa", rev=-1, value=b"")
    assert c.call("WALK", path="/pg/*", rev=rev, offset=1).path == "/pg/b"
    assert c.call("WALK", path="/pg/*", offset=1).path == "/pg/aa"


def test_responses_come_back_out_of_order_by_tag(n: Native, c: MemoryConn) -> None:
    """Responses carry their request's tag and come in the order they are ready, not sent."""
    first = c.send(verb="WAIT", path="/o", rev=n.node.store.rev + 1)
    second = c.send(verb="REV")
    third = c.send(verb="SET", path="/o", rev=-1, value=b"v")
    order = [r.tag for r in c.settle()]
    assert order[0] == second and sorted(order[1:]) == sorted([first, third])


def test_duplicate_pending_tag_is_tag_in_use(n: Native, c: MemoryConn) -> None:
    """A request reusing the tag of a pending one is TAG_IN_USE; the pending one still answers."""
    c.send(tag=7, verb="WAIT", path="/t", rev=n.node.store.rev + 1)
    c.send(tag=7, verb="REV")
    (r,) = c.settle()
    assert (r.tag, err(r)) == (7, "TAG_IN_USE")
    c.send(tag=8, verb="SET", path="/t", rev=-1, value=b"z")
    answers = {r.tag: r for r in c.settle()}
    assert answers[7].value == b"z"
    assert err(c.call("REV", tag=7)) is None  # free again once answered


def test_missing_tag_is_answered_as_tag_zero(c: MemoryConn) -> None:
    """A request without a tag is answered with tag 0 (proto2's default)."""
    body = Request(verb=VERB["REV"]).SerializeToString()
    c.send_raw(len(body).to_bytes(4, "big") + body)
    (r,) = c.settle()
    assert r.tag == 0 and r.rev > 0


@pytest.mark.parametrize("verb", [None, 4, 10, 98, 1000])
def test_unknown_verb(c: MemoryConn, verb: int | None) -> None:
    """An unknown (or absent) verb is UNKNOWN_VERB, and the connection keeps serving."""
    fields = {} if verb is None else {"verb": verb}
    if verb is not None and verb not in VERB.values():
        # The spec's enum cannot hold an unknown value; encode the varint by hand.
        body = Request(tag=5).SerializeToString() + b"\x10" + _varint(verb)
    else:
        body = Request(tag=5, **fields).SerializeToString()
    c.send_raw(len(body).to_bytes(4, "big") + body)
    (r,) = c.settle()
    assert (r.tag, err(r)) == (5, "UNKNOWN_VERB")
    assert err(c.call("REV")) is None and not c.closed


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def test_secrets_require_access_first() -> None:
    """With secrets configured, anything but ACCESS is OTHER 'permission denied' until a secret."""
    n = Native(rw=b"rw-secret", ro=b"ro-secret")
    c = n.conn()
    for verb, fields in [("REV", {}), ("GET", {"path": "/a"}), ("SET", {"path": "/a", "rev": -1}),
                         ("WAIT", {"path": "/**", "rev": 1}), ("SELF", {}), ("NOP", {})]:
        r = c.call(verb, **fields)
        assert (err(r), r.err_detail) == ("OTHER", "permission denied"), verb
    r = c.call("ACCESS", value=b"wrong")
    assert (err(r), r.err_detail) == ("OTHER", "permission denied")
    assert err(c.call("ACCESS", value=b"rw-secret")) is None
    assert err(c.call("SET", path="/a", rev=-1, value=b"x")) is None
    assert c.call("GET", path="/a").value == b"x"


def test_read_only_secret_reads_but_cannot_write() -> None:
    """The read-only secret grants reads; writes and NOP are 'permission denied'."""
    n = Native(rw=b"rw-secret", ro=b"ro-secret")
    c = n.conn()
    assert err(c.call("ACCESS", value=b"ro-secret")) is None
    assert err(c.call("GET", path="/a")) is None and err(c.call("REV")) is None
    for verb, fields in [("SET", {"path": "/a", "rev": -1}), ("DEL", {"path": "/a", "rev": -1}), ("NOP", {})]:
        r = c.call(verb, **fields)
        assert (err(r), r.err_detail) == ("OTHER", "permission denied"), verb
    assert err(c.call("ACCESS", value=b"rw-secret")) is None
    assert err(c.call("SET", path="/a", rev=-1)) is None


def test_access_is_per_connection() -> None:
    """A secret presented on one connection grants nothing to another."""
    n = Native(rw=b"rw-secret")
    a, b = n.conn(), n.conn()
    a.call("ACCESS", value=b"rw-secret")
    assert err(a.call("REV")) is None
    assert err(b.call("REV")) == "OTHER"


def test_access_on_an_open_node_succeeds(c: MemoryConn) -> None:
    """ACCESS on a node without secrets succeeds (clients with ?sk= still connect)."""
    assert err(c.call("ACCESS", value=b"anything")) is None


def test_non_member_answers_writes_readonly() -> None:
    """A node that is not a member answers SET, DEL and NOP with READONLY, before argument checks; reads work."""
    clock = Clock()
    node = build_node(Config(pulse=0), clock, "OUTSIDER")  # never started: no CAL slot
    c = MemoryConn(NativeFactory(node), clock)
    assert err(c.call("SET", path="/a", rev=-1, value=b"x")) == "READONLY"
    assert err(c.call("SET", path="/a")) == "READONLY"
    assert err(c.call("DEL", path="/a", rev=-1)) == "READONLY"
    assert err(c.call("NOP")) == "READONLY"
    assert err(c.call("GET", path="/a")) is None


def _scenario_native(c: MemoryConn) -> None:
    c.call("SET", path="/app/config", rev=0, value=b"v1")
    c.call("SET", path="/app/config", rev=-1, value=b"v2")
    c.call("SET", path="/app/bin", rev=0, value=b"\xff\x00")
    c.call("SET", path="/app/tmp/x", rev=-1, value=b"")
    c.call("SET", path="/app/config", rev=0, value=b"refused")
    c.call("DEL", path="/app/tmp/x", rev=-1)
    c.call("NOP")
    c.call("SET", path="/ctl/name", rev=-1, value=b"refused")
    c.call("SET", path="/z", rev=-1, value="ünï".encode())


def _scenario_http(h: Harness) -> None:
    h.call("PUT", "/v1/store/app/config?rev=0", b"v1")
    h.call("PUT", "/v1/store/app/config", b"v2")
    h.call("PUT", "/v1/store/app/bin?rev=0", b"\xff\x00")
    h.call("PUT", "/v1/store/app/tmp/x", b"")
    h.call("PUT", "/v1/store/app/config?rev=0", b"refused")
    h.call("DELETE", "/v1/store/app/tmp/x")
    h.call("POST", "/v1/nop")
    h.call("PUT", "/v1/store/ctl/name", b"refused")
    h.call("PUT", "/v1/store/z", "ünï".encode())


def test_same_scenario_via_http_and_native_gives_the_same_store() -> None:
    """One scenario run through the HTTP API and through the native protocol leaves identical stores, revs included."""
    n = Native()
    _scenario_native(n.conn())
    h = Harness()
    _scenario_http(h)
    native_files = [(f.path, f.rev, f.value) for f in n.node.store.walk("/**")]
    http_files = [(f.path, f.rev, f.value) for f in h.node.store.walk("/**")]
    assert native_files == http_files
    assert n.node.store.rev == h.node.store.rev
    # And each front end reads back what the other wrote, the same way.
    c = n.conn()
    walk = h.call("GET", "/v1/walk?glob=/app/**").json["files"]
    for i, f in enumerate(walk):
        r = c.call("WALK", path="/app/**", offset=i)
        value = base64.b64decode(f["value"]) if f.get("encoding") == "base64" else f["value"].encode()
        assert (r.path, r.rev, r.value) == (f["path"], f["rev"], value)
    assert json.loads(json.dumps(walk))  # sanity: the HTTP side answered


def test_random_requests_never_break_the_node() -> None:
    """Seeded random frames and requests: no bug is logged, bad frames close, and the node keeps answering."""
    import random

    rng = random.Random(8)
    n = Native(hist=50, max_value=200)
    conns = [n.conn()]
    # (no /ctl/cal/N: naming a member that does not exist would take the quorum away)
    paths = ["/", "/a", "/a/b", "/**", "/a/*", "bad", "/a/", "/ctl/name", "/é"]
    for _ in range(3000):
        c = conns[-1]
        if rng.random() < 0.2:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 30)))
            c.send_raw(len(body).to_bytes(4, "big") + body)
        else:
            choices = {
                "tag": [0, 1, 2, -1, 2**31 - 1],
                "verb": list(VERB.values()),
                "path": paths,
                "value": [b"", b"v", b"x" * 300],
                "offset": [-1, 0, 1, 5],
                "rev": [-5, -1, 0, 1, n.node.store.rev, n.node.store.rev + 1],
            }
            fields = {k: rng.choice(v) for k, v in choices.items() if rng.random() < 0.7}
            c.send_raw(encode(**fields))
        if rng.random() < 0.05:
            n.clock.advance(rng.choice([0, 1, 11]))
        c.settle()
        if c.closed or rng.random() < 0.02:
            c.disconnect()
            conns.append(n.conn())
    for c in conns:
        c.disconnect()
    assert n.node.store.watcher_count() == 0
    assert err(n.conn().call("SET", path="/alive", rev=-1, value=b"yes")) is None
