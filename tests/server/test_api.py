"""The HTTP API of SPEC §3 on a one-member node, in memory."""

from __future__ import annotations

import base64

import pytest

from apiutil import Harness


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_put_then_get_returns_the_value(h: Harness) -> None:
    """A PUT answers the new file rev and a GET returns path, rev, value, len."""
    put = h.put("/message", b"hello, world")
    assert put.code == 200
    assert put.json["path"] == "/message"
    got = h.get("/v1/store/message")
    assert got.code == 200
    assert got.json == {
        "path": "/message",
        "rev": put.json["rev"],
        "value": "hello, world",
        "len": 12,
    }


def test_every_response_has_the_rev_header(h: Harness) -> None:
    """X-Doozer-Rev is on successes, errors and unknown routes alike."""
    put = h.put("/a", b"1")
    for url in ("/v1/rev", "/v1/store/missing", "/nope", "/v1/store/a"):
        reply = h.get(url)
        assert reply.header("X-Doozer-Rev") == str(put.json["rev"]), url


def test_content_type_is_json(h: Harness) -> None:
    """JSON answers say so, with the charset."""
    assert h.get("/v1/rev").header("Content-Type") == "application/json; charset=utf-8"


def test_rev_grows_with_each_write(h: Harness) -> None:
    """/v1/rev is the rev of the last applied change."""
    first = h.put("/a", b"1").json["rev"]
    second = h.put("/b", b"2").json["rev"]
    assert second > first
    assert h.get("/v1/rev").json == {"rev": second}


def test_directory_read_lists_sorted_entries(h: Harness) -> None:
    """GET of a directory lists its names, sorted, with the rev read at."""
    h.put("/d/b", b"")
    h.put("/d/a/x", b"")
    rev = h.put("/d/c", b"").json["rev"]
    got = h.get("/v1/store/d")
    assert got.json == {"path": "/d", "dir": True, "entries": ["a", "b", "c"], "rev": rev}


def test_root_is_a_directory(h: Harness) -> None:
    """/v1/store/ is the root directory, which holds /ctl."""
    got = h.get("/v1/store/")
    assert got.json["dir"] is True
    assert "ctl" in got.json["entries"]


def test_raw_read_returns_the_bytes(h: Harness) -> None:
    """?raw=1 and Accept: application/octet-stream return the body itself."""
    rev = h.put("/bin", b"\x00\xffabc").json["rev"]
    for reply in (
        h.get("/v1/store/bin?raw=1"),
        h.get("/v1/store/bin", Accept="application/octet-stream"),
    ):
        assert reply.code == 200
        assert reply.body == b"\x00\xffabc"
        assert reply.header("X-Doozer-File-Rev") == str(rev)


def test_raw_read_of_a_directory_is_isdir(h: Harness) -> None:
    """A raw read needs a file."""
    h.put("/d/f", b"")
    reply = h.get("/v1/store/d?raw=1")
    assert (reply.code, reply.json["error"]) == (409, "ISDIR")


def test_non_utf8_values_are_base64(h: Harness) -> None:
    """Bytes that are not UTF-8 come back base64-encoded and marked."""
    h.put("/bin", b"\xff\xfe")
    got = h.get("/v1/store/bin").json
    assert got["encoding"] == "base64"
    assert base64.b64decode(got["value"]) == b"\xff\xfe"


def test_missing_file_is_noent(h: Harness) -> None:
    """GET of nothing is 404 NOENT with a detail."""
    reply = h.get("/v1/store/nothing")
    assert reply.code == 404
    assert reply.json["error"] == "NOENT"
    assert reply.json["detail"]


@pytest.mark.parametrize(
    "query, ok",
    [("rev=0", True), ("rev=-1", True), ("", True), ("rev=abc", False), ("rev=-2", False)],
)
def test_write_rev_argument_is_checked(h: Harness, query: str, ok: bool) -> None:
    """rev on a write is -1, 0 or R > 0; anything else is BAD_ARG."""
    reply = h.call("PUT", "/v1/store/x?" + query, b"v")
    if ok:
        assert reply.code == 200
    else:
        assert (reply.code, reply.json["error"]) == (400, "BAD_ARG")


def test_precondition_zero_refuses_an_existing_file(h: Harness) -> None:
    """rev=0 creates only; a second create is REV_MISMATCH with the current rev."""
    rev = h.put("/once", b"a", rev=0).json["rev"]
    again = h.put("/once", b"b", rev=0)
    assert again.code == 409
    assert again.json["error"] == "REV_MISMATCH"
    assert again.json["rev"] == rev
    assert h.get("/v1/store/once").json["value"] == "a"


def test_precondition_r_is_compare_and_set(h: Harness) -> None:
    """rev=R succeeds while the file's rev is <= R."""
    rev = h.put("/cas", b"a").json["rev"]
    assert h.put("/cas", b"b", rev=rev).code == 200
    stale = h.put("/cas", b"c", rev=rev)
    assert stale.json["error"] == "REV_MISMATCH"


def test_failed_write_still_takes_a_rev(h: Harness) -> None:
    """A failed precondition changes no file but takes a rev (doozerd)."""
    h.put("/f", b"a", rev=0)
    before = h.get("/v1/rev").json["rev"]
    h.put("/f", b"b", rev=0)
    assert h.get("/v1/rev").json["rev"] == before + 1


def test_delete_removes_the_file_and_empty_parents(h: Harness) -> None:
    """DEL answers its rev; the now-empty directory disappears."""
    h.put("/gone/f", b"x")
    reply = h.call("DELETE", "/v1/store/gone/f")
    assert reply.code == 200 and reply.json["path"] == "/gone/f"
    assert h.get("/v1/store/gone").json["error"] == "NOENT"


def test_delete_of_missing_is_noent(h: Harness) -> None:
    """Deleting nothing is NOENT."""
    assert h.call("DELETE", "/v1/store/nothing").json["error"] == "NOENT"


def test_write_onto_directory_is_isdir_and_below_file_is_notdir(h: Harness) -> None:
    """A file cannot replace a directory nor hold children."""
    h.put("/p/q", b"")
    assert h.put("/p", b"").json["error"] == "ISDIR"
    assert h.put("/p/q/r", b"").json["error"] == "NOTDIR"


@pytest.mark.parametrize("path", ["/a//b", "/a/", "/a/./b", "/a/%2E%2E/b", "/a%20b", "/" + "x" * 256])
def test_bad_paths_are_refused(h: Harness, path: str) -> None:
    """Paths outside SPEC §1 are BAD_PATH and nothing is written."""
    before = h.get("/v1/rev").json["rev"]
    reply = h.call("PUT", "/v1/store" + path, b"v")
    assert (reply.code, reply.json["error"]) == (400, "BAD_PATH")
    assert h.get("/v1/rev").json["rev"] == before


def test_non_utf8_url_is_bad_path(h: Harness) -> None:
    """A URL that is not UTF-8 gets a JSON BAD_PATH."""
    reply = h.get("/v1/store/%ff")
    assert (reply.code, reply.json["error"]) == (400, "BAD_PATH")


def test_ctl_is_forbidden_except_cal_slots(h: Harness) -> None:
    """Clients may write CAL slots but nothing else under /ctl."""
    assert h.put("/ctl/name", b"x").json["error"] == "FORBIDDEN"
    assert h.put("/ctl/cal/1", b"").code == 200


def test_stat_of_file_and_directory(h: Harness) -> None:
    """STAT gives rev and len of a file, entry count of a directory."""
    rev = h.put("/s/f", b"abc").json["rev"]
    assert h.get("/v1/stat/s/f").json == {"path": "/s/f", "dir": False, "rev": rev, "len": 3}
    assert h.get("/v1/stat/s").json == {"path": "/s", "dir": True, "len": 1}


def test_getdir_pages_with_offset_and_limit(h: Harness) -> None:
    """GETDIR returns sorted names from offset, at most limit."""
    for name in "edcba":
        rev = h.put(f"/g/{name}", b"").json["rev"]
    reply = h.get("/v1/getdir/g?offset=1&limit=2")
    assert reply.json == {"path": "/g", "rev": rev, "entries": ["b", "c"]}
    assert h.get("/v1/getdir/g?offset=9").json["entries"] == []


def test_getdir_of_a_file_is_notdir(h: Harness) -> None:
    """GETDIR needs a directory."""
    h.put("/file", b"")
    assert h.get("/v1/getdir/file").json["error"] == "NOTDIR"


@pytest.mark.parametrize("query", ["offset=-1", "limit=0", "offset=x", "limit=1.5"])
def test_paging_arguments_are_checked(h: Harness, query: str) -> None:
    """offset >= 0 and limit >= 1 are integers, else BAD_ARG."""
    h.put("/g/a", b"")
    assert h.get("/v1/getdir/g?" + query).json["error"] == "BAD_ARG"


def test_walk_lists_matching_files_in_path_order(h: Harness) -> None:
    """WALK returns files matching the glob, in path order, paged."""
    for path in ("/w/b/1", "/w/a/2", "/w/a/1", "/x/1"):
        rev = h.put(path, path.encode()).json["rev"]
    reply = h.get("/v1/walk?glob=/w/**")
    assert reply.json["rev"] == rev
    assert [f["path"] for f in reply.json["files"]] == ["/w/a/1", "/w/a/2", "/w/b/1"]
    assert reply.json["files"][0]["value"] == "/w/a/1"
    paged = h.get("/v1/walk?glob=/w/**&offset=1&limit=1").json["files"]
    assert [f["path"] for f in paged] == ["/w/a/2"]


def test_walk_needs_a_glob(h: Harness) -> None:
    """glob is required: MISSING_ARG; a bad one is BAD_GLOB."""
    assert h.get("/v1/walk").json["error"] == "MISSING_ARG"
    assert h.get("/v1/walk?glob=nope").json["error"] == "BAD_GLOB"


def test_read_at_an_old_rev(h: Harness) -> None:
    """?rev=N answers the store as of rev N."""
    old = h.put("/v", b"old").json["rev"]
    h.put("/v", b"new")
    assert h.get(f"/v1/store/v?rev={old}").json["value"] == "old"
    assert h.get(f"/v1/walk?glob=/v&rev={old}").json["files"][0]["value"] == "old"


def test_read_rev_must_be_positive(h: Harness) -> None:
    """rev=0 on a read is BAD_ARG."""
    assert h.get("/v1/store/v?rev=0").json["error"] == "BAD_ARG"


def test_read_at_a_future_rev_waits_then_times_out(h: Harness) -> None:
    """A read at a rev not yet applied waits, and answers 504 TIMEOUT after timeout."""
    future = h.get("/v1/rev").json["rev"] + 5
    out = h.start("GET", f"/v1/store/ctl?rev={future}&timeout=2")
    assert out == []
    h.clock.advance(2.1)
    h.settle()
    assert (out[0].code, out[0].json["error"]) == (504, "TIMEOUT")


def test_read_at_a_future_rev_answers_when_it_arrives(h: Harness) -> None:
    """The waiting read answers as soon as the node reaches the rev."""
    target = h.get("/v1/rev").json["rev"] + 1
    out = h.start("GET", f"/v1/store/later?rev={target}")
    assert out == []
    h.put("/later", b"here")
    h.settle()
    assert out[0].json["value"] == "here"


def test_too_old_rev_is_too_late_with_oldest() -> None:
    """Past the --hist window a read is 410 TOO_LATE and says the oldest rev."""
    h = Harness(hist=5)
    first = h.put("/h", b"0").json["rev"]
    for i in range(30):
        h.put("/h", str(i).encode())
    reply = h.get(f"/v1/store/h?rev={first}")
    assert reply.code == 410
    assert reply.json["error"] == "TOO_LATE"
    assert reply.json["oldest"] > first
    assert h.get(f"/v1/store/h?rev={reply.json['oldest']}").code == 200


def test_consistent_read_runs_a_round(h: Harness) -> None:
    """consistent=1 reads after one consensus round (the rev moves on)."""
    rev = h.put("/c", b"v").json["rev"]
    reply = h.get("/v1/store/c?consistent=1")
    assert reply.json["value"] == "v"
    assert int(reply.header("X-Doozer-Rev")) > rev


def test_nop_takes_a_rev(h: Harness) -> None:
    """POST /v1/nop answers the rev of the no-op."""
    before = h.get("/v1/rev").json["rev"]
    reply = h.call("POST", "/v1/nop")
    assert reply.json == {"rev": before + 1}


def test_self_describes_the_node(h: Harness) -> None:
    """/v1/self names the node, its address and cluster, and that it is a writable member."""
    assert h.get("/v1/self").json == {
        "id": "TESTNODE",
        "addr": "127.0.0.1:8046",
        "cluster": "local",
        "member": True,
        "writable": True,
        "voting": True,
    }


def test_cluster_lists_the_member(h: Harness) -> None:
    """/v1/cluster lists the one member in slot 0 with its applied rev, that
    it votes, and that a one-member cluster can lose none."""
    reply = h.get("/v1/cluster").json
    assert reply["cluster"] == "local"
    assert reply["members"] == [
        {"id": "TESTNODE", "addr": "127.0.0.1:8046", "slot": 0, "applied": reply["rev"],
         "voting": True}
    ]
    assert [n["id"] for n in reply["nodes"]] == ["TESTNODE"]
    assert reply["fault_tolerance"] == 0


@pytest.mark.parametrize("slot", ["01", "1000", "00", "1.0", "-1"])
def test_odd_cal_slot_names_are_forbidden(h: Harness, slot: str) -> None:
    """SPEC §1: only canonical slot names /ctl/cal/N (0-999, no sign, no
    leading zero) may be written; /ctl/cal/01 would share slot 1's number."""
    reply = h.put(f"/ctl/cal/{slot}", b"")
    assert (reply.code, reply.json["error"]) == (403, "FORBIDDEN")
    assert "not a CAL slot" in reply.json["detail"]
    assert h.put("/ctl/cal/1", b"").code == 200


def test_unknown_route_is_json_not_found(h: Harness) -> None:
    """An unknown endpoint is 404 NOT_FOUND in JSON."""
    reply = h.get("/v2/whatever")
    assert (reply.code, reply.json["error"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize("method, url", [("GET", "/v1//rev"), ("POST", "/v1/lease//keepalive"),
                                         ("POST", "/v1//lease"), ("GET", "/v1/store//")])
def test_doubled_slashes_outside_a_path_are_not_found_not_redirected(
        h: Harness, method: str, url: str) -> None:
    """werkzeug would answer these with a bodiless 308 to the merged URL;
    every answer is a SPEC §3 error body instead (the lease fuzz found it)."""
    reply = h.call(method, url)
    assert (reply.code, reply.json["error"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize("method, url", [("POST", "/v1/store/a"), ("DELETE", "/v1/rev"), ("GET", "/v1/nop")])
def test_wrong_method_is_405(h: Harness, method: str, url: str) -> None:
    """A known endpoint with the wrong method is 405 METHOD_NOT_ALLOWED."""
    reply = h.call(method, url)
    assert (reply.code, reply.json["error"]) == (405, "METHOD_NOT_ALLOWED")


def test_body_over_max_value_is_too_large() -> None:
    """A body over --max-value is 413 TOO_LARGE and nothing is written."""
    h = Harness(max_value=10)
    assert h.put("/big", b"x" * 11).json["error"] == "TOO_LARGE"
    assert h.put("/ok", b"x" * 10).code == 200
    assert h.get("/v1/store/big").json["error"] == "NOENT"


def test_bad_path_answers_before_too_large() -> None:
    """Path syntax errors come before body size (SPEC's order)."""
    h = Harness(max_value=1)
    assert h.put("/a//b", b"xx").json["error"] == "BAD_PATH"


class TestSecrets:
    """The rw/ro secrets of SPEC §3."""

    def test_no_secret_is_unauthorized(self) -> None:
        """With a secret configured, a request without one is 401, even to an unknown route."""
        h = Harness(rw=b"s3cret")
        for url in ("/v1/rev", "/nope"):
            reply = h.get(url)
            assert (reply.code, reply.json["error"]) == (401, "UNAUTHORIZED")

    def test_wrong_secret_is_unauthorized(self) -> None:
        """A wrong secret is refused."""
        h = Harness(rw=b"s3cret")
        assert h.get("/v1/rev", Authorization="Bearer nope").code == 401

    def test_rw_secret_reads_and_writes(self) -> None:
        """The read-write secret grants everything."""
        h = Harness(rw=b"s3cret")
        auth = "Bearer s3cret"
        assert h.call("PUT", "/v1/store/a", b"1", Authorization=auth).code == 200
        assert h.get("/v1/store/a", Authorization=auth).json["value"] == "1"

    def test_ro_secret_reads_only(self) -> None:
        """The read-only secret reads and watches, but a write or nop is 403."""
        h = Harness(rw=b"rw", ro=b"ro")
        auth = "Bearer ro"
        assert h.get("/v1/rev", Authorization=auth).code == 200
        assert h.get("/v1/store/ctl?consistent=1", Authorization=auth).code == 200
        put = h.call("PUT", "/v1/store/a", b"1", Authorization=auth)
        assert (put.code, put.json["error"]) == (403, "FORBIDDEN")
        assert h.call("POST", "/v1/nop", Authorization=auth).code == 403


def test_readonly_api_refuses_writes() -> None:
    """The WebView's read-only API answers writes with 405."""
    h = Harness(readonly=True)
    assert h.put("/a", b"1").code == 405
    assert h.get("/v1/rev").code == 200
