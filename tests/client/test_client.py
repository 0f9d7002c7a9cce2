"""The client's own calls (doozer/client/client.py): every read and write
verb against the real API in memory, its errors, and the URI's secret."""

from __future__ import annotations

import pytest
from clientutil import World

from doozer.client import (
    BadPath,
    BadURI,
    Client,
    Dir,
    DoozerError,
    Event,
    File,
    Forbidden,
    NoEnt,
    NotDir,
    RevMismatch,
    SelfInfo,
    Stat,
    TooLate,
    Unauthorized,
)


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


def test_client_needs_an_address() -> None:
    """A Client with no address is refused."""
    with pytest.raises(BadURI):
        Client([])
