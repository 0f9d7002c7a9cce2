"""10,000 concurrent watches on one node: wake-up time and memory per watch.

    python bench/watch_fanout.py [--watches 10000]

Opens N long-poll watches on /bench/key from a separate client process's
event loop, waits until the node holds them all, writes the key once and
prints the time from that write until all N responses arrived, and the
node's resident memory per watch. Targets: <= 0.5 s, <= 10 KiB per watch.
Never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time

import procs


def open_fds(pid: int) -> int:
    """How many file descriptors a process holds (one per accepted connection)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


class WatchClient(asyncio.Protocol):
    """One long-poll watch; notes when the first byte of its answer arrives.

    A bare Protocol, not streams and a task per connection: the client
    shares the machine with the node, and the figure should be the node's.
    The connection stays open until every answer is in, as a watcher that
    polls again on its keep-alive connection would keep it.
    """

    def __init__(self, request: bytes, arrived: asyncio.Future, waiting: list) -> None:
        self.request = request
        self.arrived = arrived
        self.waiting = waiting
        self.transport = None
        self.at = None
        self.ok = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.at is None:
            self.at = time.monotonic()
            self.ok = data.startswith(b"HTTP/1.1 200") and b'"op":"set"' in data
            self.waiting[0] -= 1
            if self.waiting[0] == 0 and not self.arrived.done():
                self.arrived.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.at is None and not self.arrived.done():
            self.arrived.set_exception(RuntimeError(f"a watch connection was lost: {exc}"))


async def run(port: int, pid: int, watches: int) -> None:
    # From an explicit rev, so that a watch the node takes in late still
    # sees the write instead of waiting for its timeout.
    request = (
        b"GET /v1/watch?glob=/bench/key&timeout=300&rev=%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
        % (procs.rev(port) + 1, port)
    )
    # Let the node close the connections of the requests so far, then count
    # its descriptors: each watch adds one.
    await asyncio.sleep(0.5)
    base = procs.rss_kib(pid)
    base_fds = open_fds(pid)
    loop = asyncio.get_running_loop()
    arrived = loop.create_future()
    waiting = [watches]
    clients = []
    for i in range(watches):
        for attempt in range(10):
            # Now and then a connect hangs on a busy machine (a lost SYN
            # waits for the kernel's backoff); give up on it and dial again.
            try:
                _, client = await asyncio.wait_for(loop.create_connection(
                    lambda: WatchClient(request, arrived, waiting), "127.0.0.1", port
                ), 2)
                break
            except asyncio.TimeoutError:
                continue
        else:
            raise SystemExit("could not connect to the node")
        clients.append(client)
        if i % 50 == 49:
            # Let the node accept this batch before the next: twistd listens
            # with a backlog of 50, and connections beyond a full accept
            # queue are only taken in after SYN-ACK retransmits (seconds).
            deadline = time.monotonic() + 5
            while open_fds(pid) < base_fds + i - 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
    # Wait until the node has accepted every connection: a connection the
    # client sees as open may still sit in the node's (overflowed) accept queue.
    deadline = time.monotonic() + 60
    while open_fds(pid) < base_fds + watches:
        if time.monotonic() > deadline:
            print(f"warning: the node took in {open_fds(pid) - base_fds} of {watches} connections")
            break
        await asyncio.sleep(0.05)
    # Wait until the node has taken every request in (its memory stops growing).
    last, stable = -1, 0
    deadline = time.monotonic() + 15
    while stable < 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = procs.rss_kib(pid)
        stable = stable + 1 if now == last else 0
        last = now
    held = procs.rss_kib(pid)
    start = time.monotonic()
    await loop.run_in_executor(None, procs.put, port, "/bench/key", b"wake up")
    await asyncio.wait_for(arrived, 300)
    elapsed = max(c.at for c in clients) - start
    for c in clients:
        c.transport.close()
    wrong = sum(not c.ok for c in clients)
    if wrong:
        print(f"warning: {wrong} answers were not the event")
    per_watch = (held - base) / watches
    print(f"watches held:                {watches}")
    print(f"write -> all responses:      {elapsed:.3f} s (target <= 0.5 s)")
    print(f"node RSS before / holding:   {base} KiB / {held} KiB")
    print(f"RSS per watch:               {per_watch:.1f} KiB (target <= 10 KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watches", type=int, default=10000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.watches + 100:
        raise SystemExit(f"raise the open-files limit (ulimit -n) above {args.watches + 100}")
    # Every watch comes from 127.0.0.1, over the default --max-conns-per-ip
    # (1,000): allow them all, as an operator of such a node would.
    conns = str(args.watches + 100)
    with procs.doozer_node("--max-conns", conns, "--max-conns-per-ip", conns) as (port, proc):
        asyncio.run(run(port, proc.pid, args.watches))


if __name__ == "__main__":
    main()
