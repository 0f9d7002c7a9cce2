"""The client against real twistd nodes over sockets and the real reactor:
every verb, failover from a dead address, and watches that outlive their
address or their node (slow)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater

from doozer.client import Client, Event, File, RevMismatch, Stat, connect


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
