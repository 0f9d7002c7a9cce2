"""The treq client (doozer.client) against the real API, in memory and over sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Any

import pytest
import pytest_twisted
from clientutil import World, outcome
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from doozer.client import (
    BadPath,
    BadURI,
    Busy,
    Client,
    Dir,
    DoozerError,
    Event,
    File,
    Forbidden,
    NoEnt,
    NotDir,
    NotFound,
    Other,
    ReadOnly,
    RevMismatch,
    SelfInfo,
    Stat,
    Timeout,
    TooLate,
    Unauthorized,
    Unavailable,
    Unreachable,
    connect,
    error_from_response,
    parse_uri,
)

# ----------------------------------------------------------------------
# URIs


def test_doozer_uri_lists_every_ca_in_order_with_the_secret() -> None:
    """A doozer: URI gives one base URL per ca, in order, and the sk secret."""
    target = parse_uri("doozer:?ca=10.0.0.1:8046&ca=10.0.0.2:9000&sk=s3cret")
    assert target.bases == ("http://10.0.0.1:8046", "http://10.0.0.2:9000")
    assert target.secret == "s3cret"


def test_doozer_uri_ca_without_port_uses_8046() -> None:
    """A ca without a port means doozerd's port 8046."""
    assert parse_uri("doozer:?ca=localhost").bases == ("http://localhost:8046",)


def test_http_and_https_urls_are_single_addresses() -> None:
    """http(s)://HOST:PORT is one address, trailing slash allowed."""
    assert parse_uri("http://127.0.0.1:8046/").bases == ("http://127.0.0.1:8046",)
    assert parse_uri("https://db.example:443").bases == ("https://db.example:443",)


@pytest.mark.parametrize(
    "uri", ["doozer:?sk=x", "ftp://h:1", "http://h:1/v1/store", "doozer:?ca=h:notaport", "h:1"]
)
def test_unusable_uris_are_refused(uri: str) -> None:
    """A URI with no usable address or another scheme raises BadURI."""
    with pytest.raises(BadURI):
        connect(uri)


# ----------------------------------------------------------------------
# every verb, in memory against the real API


def test_set_then_get_returns_the_bytes_and_the_file_rev() -> None:
    """set returns the new file rev and get returns a File with that rev and value."""
    w = World()
    c = w.client()
    rev = w.resolve(c.set("/message", b"hello, world\n", 0))
    assert w.resolve(c.get("/message")) == File("/message", rev, b"hello, world\n")


def test_get_at_an_old_rev_sees_the_old_value() -> None:
    """get(path, rev) reads the store as of that rev."""
    w = World()
    c = w.client()
    first = w.resolve(c.set("/k", b"one"))
    w.resolve(c.set("/k", b"two"))
    assert w.resolve(c.get("/k", first)).value == b"one"


def test_values_that_are_not_utf8_come_back_as_the_same_bytes() -> None:
    """Base64-encoded values (non-UTF-8) are decoded to bytes by get, walk and watch."""
    w = World()
    c = w.client()
    blob = bytes(range(256))
    rev = w.resolve(c.set("/bin", blob))
    assert w.resolve(c.get("/bin")).value == blob
    assert w.resolve(c.walk("/bin")).files == [File("/bin", rev, blob)]
    assert w.resolve(c.watch("/bin", rev).next()) == Event(rev, "/bin", "set", blob)


def test_get_of_a_directory_returns_its_sorted_entries() -> None:
    """get on a directory returns a Dir with sorted entry names."""
    w = World()
    c = w.client()
    w.write("/d/b", b"")
    w.write("/d/a", b"")
    d = w.resolve(c.get("/d"))
    assert isinstance(d, Dir) and d.entries == ["a", "b"]


def test_get_raw_returns_bytes_and_file_rev_and_refuses_directories() -> None:
    """get_raw returns the file's bytes and rev; on a directory it raises IsDir."""
    w = World()
    c = w.client()
    rev = w.write("/d/f", b"\x00raw")
    assert w.resolve(c.get_raw("/d/f")) == File("/d/f", rev, b"\x00raw")
    with pytest.raises(DoozerError) as info:
        w.resolve(c.get_raw("/d"))
    assert info.value.code == "ISDIR"


def test_stat_tells_files_from_directories() -> None:
    """stat gives a file's rev and length, and a directory's entry count."""
    w = World()
    c = w.client()
    rev = w.write("/s/f", b"abc")
    assert w.resolve(c.stat("/s/f")) == Stat("/s/f", False, 3, rev)
    assert w.resolve(c.stat("/s")) == Stat("/s", True, 1, None)


def test_getdir_pages_with_offset_and_limit() -> None:
    """getdir returns sorted names from offset, at most limit."""
    w = World()
    c = w.client()
    for name in "edcba":
        w.write(f"/g/{name}", b"")
    assert w.resolve(c.getdir("/g")).entries == list("abcde")
    assert w.resolve(c.getdir("/g", offset=1, limit=2)).entries == ["b", "c"]
    with pytest.raises(NotDir):
        w.resolve(c.getdir("/g/a"))


def test_walk_returns_matching_files_in_path_order_at_one_rev() -> None:
    """walk returns the files matching a glob, in path order, with the rev read at."""
    w = World()
    c = w.client()
    w.write("/w/b", b"2")
    w.write("/w/a", b"1")
    w.write("/x", b"no")
    walk = w.resolve(c.walk("/w/*"))
    assert [f.path for f in walk.files] == ["/w/a", "/w/b"]
    assert walk.rev == w.node.store.rev
    assert [f.path for f in w.resolve(c.walk("/w/*", offset=1, limit=1)).files] == ["/w/b"]


def test_walk_without_a_limit_fetches_every_page() -> None:
    """walk with no limit fetches past the server's 1000-file page."""
    w = World()
    c = w.client()
    for i in range(1003):
        w.node.set(f"/many/{i:04d}", b"")
    w.settle()
    walk = w.resolve(c.walk("/many/*"))
    assert len(walk.files) == 1003
    assert walk.files[-1].path == "/many/1002"


def test_rev_nop_self_and_cluster() -> None:
    """rev, nop, self and cluster return what the node says."""
    w = World()
    c = w.client()
    rev = w.resolve(c.rev())
    assert rev == w.node.store.rev
    assert w.resolve(c.nop()) > rev
    me = w.resolve(c.self())
    assert isinstance(me, SelfInfo) and me.id == w.node.id and me.member and me.voting
    assert w.resolve(c.cluster())["members"][0]["id"] == w.node.id


def test_delete_returns_the_rev_of_the_delete() -> None:
    """delete removes the file and returns the rev it took."""
    w = World()
    c = w.client()
    w.write("/gone", b"x")
    rev = w.resolve(c.delete("/gone"))
    assert rev == w.node.store.rev
    with pytest.raises(NoEnt):
        w.resolve(c.get("/gone"))


def test_a_failed_precondition_is_rev_mismatch_with_the_current_rev() -> None:
    """A write whose rev precondition fails raises RevMismatch carrying the file's rev."""
    w = World()
    c = w.client()
    rev = w.write("/lock", b"me")
    with pytest.raises(RevMismatch) as info:
        w.resolve(c.set("/lock", b"you", 0))
    assert info.value.rev == rev
    assert info.value.code == "REV_MISMATCH"
    with pytest.raises(RevMismatch):
        w.resolve(c.delete("/lock", rev - 1))


def test_paths_must_start_with_a_slash_and_be_valid() -> None:
    """A relative path fails locally; an invalid one with the server's BAD_PATH."""
    w = World()
    c = w.client()
    with pytest.raises(BadPath):
        w.resolve(c.get("relative"))
    with pytest.raises(BadPath):
        w.resolve(c.set("/has space", b""))


def test_writes_under_ctl_are_forbidden() -> None:
    """The server's FORBIDDEN becomes Forbidden."""
    w = World()
    with pytest.raises(Forbidden):
        w.resolve(w.client().set("/ctl/name", b"x"))


def test_too_late_carries_the_oldest_rev() -> None:
    """Reading older than the kept history raises TooLate with oldest."""
    w = World(hist=5)
    c = w.client()
    for i in range(30):
        w.write("/churn", str(i).encode())
    with pytest.raises(TooLate) as info:
        w.resolve(c.get("/churn", 1))
    assert info.value.oldest is not None and info.value.oldest > 1


def test_a_secret_from_the_uri_is_presented() -> None:
    """With a rw secret configured, no secret is Unauthorized and sk= works."""
    w = World(stub_options={"rw": b"rw-secret", "ro": b"ro-secret"})
    with pytest.raises(Unauthorized):
        w.resolve(w.client().rev())
    assert w.resolve(w.client(secret="rw-secret").set("/a", b"1")) > 0
    assert w.resolve(w.client(secret="ro-secret").get("/a")).value == b"1"
    with pytest.raises(Forbidden):
        w.resolve(w.client(secret="ro-secret").set("/a", b"2"))


def test_error_bodies_that_are_not_doozer_json_still_become_typed_errors() -> None:
    """A proxy's HTML 404 is NotFound; an unknown code is Other; 503 text is Unavailable."""
    assert isinstance(error_from_response(404, b"<html>nope</html>"), NotFound)
    assert isinstance(error_from_response(500, b'{"error":"WAT","detail":"x"}'), Other)
    assert isinstance(error_from_response(503, b"busy"), Unavailable)
    err = error_from_response(409, b'{"error":"REV_MISMATCH","detail":"d","rev":4}')
    assert isinstance(err, RevMismatch) and err.rev == 4


# ----------------------------------------------------------------------
# failover and timeouts


def test_failover_skips_a_dead_first_address_and_sticks_to_the_live_one() -> None:
    """With the first address refusing connections, calls go to the second, which is then tried first."""
    w = World("b:2")
    c = w.client("a:1", "b:2")
    assert w.resolve(c.set("/k", b"v")) > 0
    assert c.current == "http://b:2"
    w.net.calls.clear()
    w.resolve(c.get("/k"))
    assert w.net.calls == [("GET", "b:2")]


def test_a_4xx_answer_never_fails_over() -> None:
    """A NOENT from the first address is raised without asking the second."""
    w = World("a:1", "b:2")
    c = w.client("a:1", "b:2")
    with pytest.raises(NoEnt):
        w.resolve(c.get("/missing"))
    assert [netloc for _, netloc in w.net.calls] == ["a:1"]


def test_a_503_fails_over_to_the_next_address() -> None:
    """A node answering 503 READONLY is skipped for the next address."""
    from treq.testing import StringStubbingResource, StubTreq

    def readonly(*_: Any) -> tuple[int, dict[bytes, bytes], bytes]:
        return 503, {b"Content-Type": b"application/json"}, b'{"error":"READONLY","detail":"not a member"}'

    w = World("b:2")
    w.net.serve("a:1", StubTreq(StringStubbingResource(readonly)))
    c = w.client("a:1", "b:2")
    assert w.resolve(c.set("/k", b"v")) > 0
    assert [netloc for _, netloc in w.net.calls] == ["a:1", "b:2"]


def test_only_503s_raise_the_last_503_error() -> None:
    """When every address answers READONLY, ReadOnly is raised (not Unreachable)."""
    from treq.testing import StringStubbingResource, StubTreq

    def readonly(*_: Any) -> tuple[int, dict[bytes, bytes], bytes]:
        return 503, {}, b'{"error":"READONLY","detail":"not a member"}'

    w = World("b:2")
    w.net.serve("a:1", StubTreq(StringStubbingResource(readonly)))
    c = w.client("a:1")
    with pytest.raises(ReadOnly):
        w.resolve(c.set("/k", b"v"))


def test_no_live_address_is_unreachable_and_a_refused_write_is_determinate() -> None:
    """All addresses refusing: Unreachable (an Unavailable), not indeterminate."""
    w = World("b:2")
    c = w.client("a:1", "c:3")
    with pytest.raises(Unreachable) as info:
        w.resolve(c.set("/k", b"v"))
    assert isinstance(info.value, Unavailable)
    assert not info.value.indeterminate
    assert "a:1" in info.value.detail and "c:3" in info.value.detail


def test_a_hung_address_times_out_and_fails_over() -> None:
    """An address that never answers is abandoned after the timeout for the next one."""
    w = World("b:2")
    w.net.hang("a:1")
    c = w.client("a:1", "b:2", timeout=3)
    out = outcome(c.get("/"))
    w.advance(2.5)
    assert out == []
    w.advance(1)
    assert isinstance(out[0], Dir)


def test_a_write_that_timed_out_everywhere_is_indeterminate() -> None:
    """A write sent to a node that never answered may still commit: indeterminate."""
    w = World("b:2")
    w.net.hang("a:1")
    c = w.client("a:1", timeout=2)
    out = outcome(c.set("/k", b"v"))
    w.advance(3)
    assert isinstance(out[0], Failure) and out[0].check(Unreachable)
    assert out[0].value.indeterminate


def test_a_read_at_a_future_rev_that_never_comes_is_timeout() -> None:
    """get at a rev the node never reaches raises Timeout (the server's 504)."""
    w = World()
    c = w.client(timeout=2)
    out = outcome(c.get("/", w.node.store.rev + 100))
    w.advance(3)
    assert isinstance(out[0], Failure) and out[0].check(Timeout)


# ----------------------------------------------------------------------
# watches


def _collect(w: World, watch: Any, into: list) -> Any:
    async def loop() -> None:
        async for event in watch:
            into.append(event)

    return ensureDeferred(loop())


def test_watch_yields_every_matching_change_in_order() -> None:
    """A watch from now yields each later matching set and del once, in rev order."""
    w = World()
    c = w.client()
    seen: list[Event] = []
    done = outcome(_collect(w, c.watch("/w/**"), seen))
    w.settle()
    r1 = w.write("/w/a", b"1")
    w.write("/other", b"x")
    r2 = w.write("/w/b/c", b"2")
    r3 = w.resolve(w.node.delete("/w/a", -1))
    w.settle()
    assert seen == [
        Event(r1, "/w/a", "set", b"1"),
        Event(r2, "/w/b/c", "set", b"2"),
        Event(r3, "/w/a", "del", None),
    ]
    assert done == []


def test_watch_from_a_past_rev_replays_history() -> None:
    """watch(glob, rev) starts at rev, so earlier changes are delivered first."""
    w = World()
    c = w.client()
    r1 = w.write("/h", b"1")
    r2 = w.write("/h", b"2")
    watch = c.watch("/h", r1)
    assert w.resolve(watch.next()).rev == r1
    assert w.resolve(watch.next()).rev == r2
    assert watch.next_rev == r2 + 1


def test_closing_a_watch_ends_async_iteration() -> None:
    """close() cancels the long-poll and ends the async for loop."""
    w = World()
    c = w.client()
    watch = c.watch("/**")
    done = outcome(_collect(w, watch, []))
    w.settle()
    watch.close()
    w.settle()
    assert done == [None]


def test_an_idle_watch_keeps_polling_past_the_poll_timeout() -> None:
    """A long-poll that times out empty is reissued and later changes still arrive."""
    w = World()
    c = w.client()
    seen: list[Event] = []
    outcome(_collect(w, c.watch("/slow", poll_timeout=5), seen))
    w.advance(12)
    rev = w.write("/slow", b"late")
    w.settle()
    assert [e.rev for e in seen] == [rev]


def test_watch_survives_its_node_dying_and_resumes_on_the_other_address() -> None:
    """When the watched address dies mid-poll, the watch resumes on the next one from next: nothing lost or repeated."""
    w = World("a:1", "b:2")
    c = w.client("a:1", "b:2")
    seen: list[Event] = []
    done = outcome(_collect(w, c.watch("/job/*"), seen))
    w.settle()
    r1 = w.write("/job/1", b"one")
    w.settle()
    w.net.kill("a:1")
    r2 = w.write("/job/2", b"two")
    w.settle()
    r3 = w.write("/job/3", b"three")
    w.settle()
    assert [e.rev for e in seen] == [r1, r2, r3]
    assert done == []
    assert c.current == "http://b:2"


def test_watch_resumes_on_a_second_address_that_comes_up_after_the_first_died() -> None:
    """Node at A dies; the same store comes back behind B later: the watch resumes there from next."""
    from doozer.testing import stub_api

    w = World("a:1")
    c = w.client("a:1", "b:2", reconnect_timeout=30)
    seen: list[Event] = []
    done = outcome(_collect(w, c.watch("/job/*"), seen))
    w.settle()
    r1 = w.write("/job/1", b"one")
    w.net.kill("a:1")
    r2 = w.write("/job/2", b"two")
    w.advance(5)
    w.net.serve("b:2", stub_api(w.node))
    w.advance(3)
    r3 = w.write("/job/3", b"three")
    w.settle()
    assert [e.rev for e in seen] == [r1, r2, r3]
    assert done == [] and c.current == "http://b:2"


def test_watch_retries_while_no_address_answers_then_resumes() -> None:
    """With every address down for a while, the watch keeps retrying and then resumes from next."""
    w = World("a:1")
    stub = w.net.routes["a:1"]
    c = w.client("a:1", reconnect_timeout=30)
    seen: list[Event] = []
    done = outcome(_collect(w, c.watch("/r"), seen))
    w.settle()
    w.net.kill("a:1")
    r1 = w.write("/r", b"while down")
    w.advance(10)
    w.net.serve("a:1", stub)
    w.advance(3)
    r2 = w.write("/r", b"after")
    w.settle()
    assert [e.rev for e in seen] == [r1, r2]
    assert done == []


def test_watch_gives_up_after_reconnect_timeout() -> None:
    """A watch whose addresses stay down past reconnect_timeout raises Unreachable."""
    w = World("a:1")
    c = w.client("a:1", reconnect_timeout=5)
    done = outcome(_collect(w, c.watch("/r"), []))
    w.settle()
    w.net.kill("a:1")
    w.advance(8)
    assert isinstance(done[0], Failure) and done[0].check(Unreachable)


def test_watch_raises_too_late_rather_than_skipping_events() -> None:
    """If history moved past next while disconnected, the watch raises TooLate."""
    w = World("a:1", hist=5)
    stub = w.net.routes["a:1"]
    c = w.client("a:1")
    seen: list[Event] = []
    done = outcome(_collect(w, c.watch("/t"), seen))
    w.settle()
    w.net.kill("a:1")
    for i in range(30):
        w.write("/t", str(i).encode())
    w.net.serve("a:1", stub)
    w.advance(3)
    assert seen == []
    assert isinstance(done[0], Failure) and done[0].check(TooLate)


def test_wait_returns_the_first_change_at_or_after_rev() -> None:
    """wait(glob, rev) returns the first matching event with rev >= rev."""
    w = World()
    c = w.client()
    r1 = w.write("/x", b"1")
    w.write("/x", b"2")
    assert w.resolve(c.wait("/x", r1)) == Event(r1, "/x", "set", b"1")


def test_wait_with_a_timeout_raises_timeout_when_nothing_changes() -> None:
    """wait(..., timeout=S) raises Timeout after S seconds of no change."""
    w = World()
    c = w.client()
    out = outcome(c.wait("/quiet", timeout=4))
    w.advance(3)
    assert out == []
    w.advance(2)
    assert isinstance(out[0], Failure) and out[0].check(Timeout)


def test_client_needs_an_address() -> None:
    """A Client with no address is refused."""
    with pytest.raises(BadURI):
        Client([])


# ----------------------------------------------------------------------
# real processes: twistd doozer on free ports, the real reactor


@pytest.fixture
def real_node(tmp_path: Any) -> Any:
    from procutil import NodeProcess

    # Clients reach it through TCP proxies on other ports too, which pass the
    # proxy's address as Host: a name the node is told to answer to (SPEC §12).
    proc = NodeProcess(str(tmp_path / "node"), "--allowed-hosts", "127.0.0.1")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


def _wait_port(port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Proxy:
    """A TCP forwarder (twistd portforward) in front of a node: a second
    address for the same node that can be killed and restarted."""

    def __init__(self, dest_port: int, workdir: str) -> None:
        from procutil import free_port

        self.port = free_port()
        self.dest_port = dest_port
        self.workdir = workdir
        self.proc: Any = None
        os.makedirs(workdir, exist_ok=True)

    def start(self) -> "Proxy":
        from procutil import TWISTD

        self.proc = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "portforward",
             "-p", f"tcp:{self.port}:interface=127.0.0.1", "-h", "127.0.0.1",
             "-d", str(self.dest_port)],
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


async def _until(predicate: Any, seconds: float = 20.0) -> None:
    from twisted.internet import reactor

    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await deferLater(reactor, 0.05, lambda: None)


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_real_node_every_verb_over_real_sockets(real_node: Any) -> None:
    """Against a real twistd node, set/get/stat/getdir/walk/rev/nop/self/cluster/delete work."""
    c = connect(f"doozer:?ca={real_node.addr}")
    try:
        rev = await c.set("/real/a", b"\xff\x00bin", 0)
        assert await c.get("/real/a") == File("/real/a", rev, b"\xff\x00bin")
        assert (await c.get_raw("/real/a")).value == b"\xff\x00bin"
        assert await c.stat("/real") == Stat("/real", True, 1, None)
        assert (await c.getdir("/real")).entries == ["a"]
        assert [f.path for f in (await c.walk("/real/**")).files] == ["/real/a"]
        assert await c.rev() >= rev
        assert await c.nop() > rev
        assert (await c.self()).addr == real_node.addr
        assert (await c.cluster())["members"]
        with pytest.raises(RevMismatch):
            await c.set("/real/a", b"", 0)
        assert await c.delete("/real/a", rev) > rev
    finally:
        await c.close()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_real_failover_from_a_dead_first_address(real_node: Any) -> None:
    """With the first ca dead (nothing listening), calls and watches use the second."""
    from procutil import free_port

    c = connect(f"doozer:?ca=127.0.0.1:{free_port()}&ca={real_node.addr}")
    try:
        rev = await c.set("/fo", b"x")
        assert c.current == real_node.url
        event = await c.wait("/fo", rev, timeout=5)
        assert event.rev == rev
    finally:
        await c.close()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_real_watch_survives_its_address_dying_and_coming_back(real_node: Any, tmp_path: Any) -> None:
    """A watch through address A, killed mid-poll, resumes through B; restarted A then
    takes over when B dies: every event exactly once, in order."""
    a = Proxy(real_node.port, str(tmp_path / "a")).start()
    b = Proxy(real_node.port, str(tmp_path / "b")).start()
    c = connect(f"doozer:?ca=127.0.0.1:{a.port}&ca=127.0.0.1:{b.port}", timeout=5)
    direct = connect(f"doozer:?ca={real_node.addr}")
    seen: list[Event] = []
    watch = c.watch("/sv/*", await direct.rev() + 1, poll_timeout=5)

    async def collect() -> None:
        async for event in watch:
            seen.append(event)

    loop = ensureDeferred(collect())
    try:
        revs = [await direct.set("/sv/1", b"one")]
        await _until(lambda: len(seen) == 1)
        a.kill()
        revs.append(await direct.set("/sv/2", b"two"))
        revs.append(await direct.set("/sv/3", b"three"))
        await _until(lambda: len(seen) == 3)
        assert c.current == f"http://127.0.0.1:{b.port}"
        a.start()
        b.kill()
        revs.append(await direct.delete("/sv/1"))
        await _until(lambda: len(seen) == 4)
        assert [e.rev for e in seen] == revs
        assert [e.op for e in seen] == ["set", "set", "set", "del"]
        assert c.current == f"http://127.0.0.1:{a.port}"
    finally:
        watch.close()
        await loop
        a.kill()
        b.kill()
        await c.close()
        await direct.close()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_real_watch_survives_its_node_being_replaced_behind_a_second_address(
    tmp_path: Any,
) -> None:
    """In a three-node cluster, a watch on node 0 (URI: node 0, then address X) waits
    while node 0 is killed and a new node is started at X, then resumes there:
    every event exactly once, in order."""
    from procutil import NodeProcess, cluster_key_file, free_port
    from twisted.internet import reactor

    ports = [free_port() for _ in range(3)]
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    key = ("--cluster-key-file", cluster_key_file(tmp_path))
    nodes = [NodeProcess(str(tmp_path / f"n{i}"), "--peers", peers, *key, port=p)
             for i, p in enumerate(ports)]
    spare = NodeProcess(str(tmp_path / "spare"), "--peers", ",".join(peers.split(",")[1:]), *key)
    clients: list[Client] = []
    loop: Any = None
    try:
        for n in nodes:
            n.start(wait=False)
        for n in nodes:
            n.wait_up()
        # Every node must vote before one is killed: a member votes some
        # instances after it claims its slot, and until the third does, the
        # first two decide alone and node 0's death stops the cluster (a CI
        # run killed it that early, and the write after the kill failed).
        deadline = time.monotonic() + 30
        while not all(n.votes() for n in nodes):
            assert time.monotonic() < deadline, "the three nodes did not all come to vote"
            await deferLater(reactor, 0.2, lambda: None)
        # The writer outwaits the nodes' own 10 s write timeout: a stall ends
        # in their 503, which says more than a client-side cancel.
        writer = connect(f"doozer:?ca={nodes[1].addr}&ca={nodes[2].addr}", timeout=15)
        clients.append(writer)
        c = connect(f"doozer:?ca={nodes[0].addr}&ca={spare.addr}", timeout=5,
                    reconnect_timeout=60)
        clients.append(c)
        seen: list[Event] = []
        watch = c.watch("/cl/*", await writer.rev() + 1, poll_timeout=5)

        async def collect() -> None:
            async for event in watch:
                seen.append(event)

        loop = ensureDeferred(collect())
        revs = [await writer.set("/cl/1", b"one")]
        await _until(lambda: len(seen) == 1)
        nodes[0].stop()
        revs.append(await writer.set("/cl/2", b"two"))
        spare.start(wait=False)
        revs.append(await writer.set("/cl/3", b"three"))
        await _until(lambda: len(seen) == 3, seconds=60)
        revs.append(await writer.delete("/cl/1"))
        await _until(lambda: len(seen) == 4, seconds=30)
        assert [e.rev for e in seen] == revs
        assert c.current == spare.url
        watch.close()
        await loop
    finally:
        if loop is not None:
            # A failure above leaves the watch failing once its nodes stop:
            # keep it out of the next test's "logged errors".
            loop.addErrback(lambda _: None)
        for n in [*nodes, spare]:
            n.stop()
        for client in clients:
            await client.close()


# ----------------------------------------------------------------------
# backup


def test_backup_returns_the_nodes_backup_and_needs_the_read_write_secret() -> None:
    from doozer.store.backup import decode

    w = World(stub_options={"rw": b"rw-secret", "ro": b"ro-secret"})
    c = w.client(secret="rw-secret")
    w.resolve(c.set("/a", b"\xff"))
    got = decode(w.resolve(c.backup()))
    assert got.rev == w.node.store.rev
    assert got.store.walk("/**") == w.node.store.walk("/**")
    with pytest.raises(Forbidden):
        w.resolve(w.client(secret="ro-secret").backup())


def test_a_node_busy_with_another_backup_sends_the_client_to_the_next() -> None:
    from treq.testing import StubTreq

    from doozer.server.http.api import API
    from doozer.store.backup import decode

    w = World("a:1")
    busy = API(w.node)
    busy.backups.sending = object()  # as if a slow client were taking one
    w.net.serve("a:1", StubTreq(busy.resource()))
    w.net.serve("b:1", StubTreq(API(w.node).resource()))
    c = w.client("a:1", "b:1")
    assert decode(w.resolve(c.backup())).rev == w.node.store.rev
    assert c.current == "http://b:1"
    with pytest.raises(Busy):
        w.resolve(w.client("a:1").backup())
