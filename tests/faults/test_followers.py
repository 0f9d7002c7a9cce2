"""The node-log followers across a restart from a data dir
(:mod:`tests.faults.followers`), against a stub node on 127.0.0.1 that
serves ``/v1/watch`` from a list of events.

A restarted node is the same address with a new process: its follower is
a new one, whose log is named ``HOST:PORT@2`` and starts
``RESTART_OVERLAP`` revs before where the dead process's follower got. If
the restarted node serves those revs otherwise than the dead one did (it
lost its log), the log checker must see it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
from typing import Any, Optional

import pytest

from tests.faults import followers
from tests.faults.followers import LogFollowers
from tests.faults.history import Event
from tests.faults.logcheck import check_logs


class StubNode:
    """What a follower needs of a node: its address, a process, and
    ``/v1/watch`` answers (no long poll: an empty answer at once)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.addr = ""
        self.proc: Optional[Any] = FakeProc()
        self.server: Optional[asyncio.AbstractServer] = None

    async def serve(self) -> None:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.addr = "127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ")[1].decode()
                q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
                rev, limit = int(q["rev"]), int(q["limit"])
                head_rev = max((e.rev for e in self.events), default=0)
                found = [e for e in self.events if e.rev >= rev][:limit]
                nxt = found[-1].rev + 1 if len(found) == limit else max(rev, head_rev + 1)
                body = json.dumps({"events": [e.to_json() for e in found], "next": nxt}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


class FakeProc:
    def __init__(self) -> None:
        self.dead = False

    def poll(self) -> Optional[int]:
        return -9 if self.dead else None


class FakeCluster:
    def __init__(self, node: StubNode) -> None:
        self.all = [node]
        self.starts = {node.addr: 1}


def history(values: str, n: int) -> list[Event]:
    return [Event(r, "/k", "set", f"{values}{r}".encode()) for r in range(1, n + 1)]


def run_apart(coro: Any) -> Any:
    """``asyncio.run(coro)`` in a thread of its own, as the fast workload
    runs its loop: the test process may already run an event loop here
    (a Twisted reactor on asyncio, started by another test of this worker),
    and asyncio.run refuses to start one inside it."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(("ok", asyncio.run(coro)))
        except BaseException as e:  # handed to the test's thread
            out.append(("error", e))

    thread = threading.Thread(target=run, name="followers-test")
    thread.start()
    thread.join(60)
    assert out, "the followers' loop did not end in 60 s"
    kind, value = out[0]
    if kind == "error":
        raise value
    return value


async def until(what: str, check: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def follow_a_restart(after: list[Event]) -> list:
    """Follow a node through revs 1..10, kill it, restart it serving
    ``after``, follow it to its last rev; the logs."""
    node = StubNode()
    await node.serve()
    node.events = history("a", 10)
    cluster = FakeCluster(node)
    f = LogFollowers(cluster, 0, asyncio.get_running_loop())
    f.start()
    await until("the first follower at rev 10", lambda: f.state.get(node.addr, {}).get("next") == 11)
    assert node.proc is not None
    node.proc.dead = True  # kill -9; then the same address from its data dir
    node.events = after
    node.proc = FakeProc()
    cluster.starts[node.addr] = 2
    end = after[-1].rev
    await until("the restarted node's follower",
                lambda: f.state.get(f"{node.addr}@2", {}).get("next") == end + 1)
    logs = await f.finish({node.addr: end}, 10)
    assert node.server is not None
    node.server.close()
    return sorted(logs, key=lambda lg: lg.node)


@pytest.fixture
def overlap(monkeypatch: Any) -> int:
    monkeypatch.setattr(followers, "RESTART_OVERLAP", 3)
    return 3


def test_a_restarted_node_gets_a_follower_of_its_own_from_a_little_before(overlap: int) -> None:
    """Kept log: the restarted process's log, from 3 revs before where the
    first got (rev 11), agrees with the first; both are checked."""
    logs = run_apart(follow_a_restart(history("a", 12)))
    assert [(lg.node.split(":")[1].split("@")[1:], lg.start, lg.end) for lg in logs] == [
        ([], 1, 10), (["2"], 11 - overlap, 12)]
    assert [e.rev for e in logs[1].events] == list(range(8, 13))
    assert check_logs(logs).ok


def test_a_restarted_node_that_lost_its_log_is_found_out(overlap: int) -> None:
    """Lost log: the restarted node decided revs 7.. again with other
    values; the overlap (from rev 8) shows it to the log checker."""
    logs = run_apart(follow_a_restart(history("a", 6) + [Event(r, "/k", "set", b"b") for r in range(7, 13)]))
    result = check_logs(logs)
    assert not result.ok
    assert any("diverge" in p and "first at rev 8" in p for p in result.problems), result.problems
