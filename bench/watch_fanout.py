"""10,000 concurrent watches on one node: wake-up time and memory per watch.

    python bench/watch_fanout.py [--watches 10000] [--native]

Opens N long-poll watches on /bench/key, waits until the node holds them
all, writes the key once and prints the time from that write until all N
responses arrived, the node's CPU time over that span, and its resident
memory per watch. Issue 21's targets: <= 0.2 s for 10,000, <= 10 KiB per
watch with 50,000. Never pass/fail.

An HTTP watch holds a connection, and a process here may hold at most
20,000 descriptors (the hard limit, which even root cannot raise), so
50,000 HTTP watches cannot be opened on this machine. ``--native`` holds
the watches as doozerd-protocol WAITs instead, 1,000 on each connection
(``--max-outstanding``'s default): each one a watch in the node's store,
as an HTTP watch is, without its connection.

The client is a bare ``epoll`` loop over non-blocking sockets, not
asyncio: it shares the machine's two cores with the node, and asyncio's
few microseconds per readable socket, 10,000 times, would be part of the
figure, which should be the node's.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import socket
import threading
import time
import urllib.request
from typing import Callable, Optional

import procs
from cluster_write import cpu_seconds

from doozer.server.doozerd import proto

#: WAITs per doozerd-protocol connection (the node's --max-outstanding default)
PER_CONN = 1000


def open_fds(pid: int) -> int:
    """How many file descriptors a process holds (one per accepted connection)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect(port: int, request: bytes) -> socket.socket:
    """One watch: connected, its request sent, then non-blocking."""
    for attempt in range(10):
        sock = socket.socket()
        # Now and then a connect hangs on a busy machine (a lost SYN waits
        # for the kernel's backoff); give up on it and dial again.
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(request)
        except (socket.timeout, OSError):
            sock.close()
            continue
        sock.setblocking(False)
        return sock
    raise SystemExit("could not connect to the node")


def hold(port: int, pid: int, watches: int) -> list[socket.socket]:
    """N watches held by the node, each from an explicit rev (a watch the
    node takes in late still sees the write instead of waiting for its timeout)."""
    request = (
        b"GET /v1/watch?glob=/bench/key&timeout=300&rev=%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
        % (procs.rev(port) + 1, port)
    )
    base_fds = open_fds(pid)
    socks = []
    for i in range(watches):
        socks.append(connect(port, request))
        if i % 50 == 49:
            # Let the node accept this batch before the next: connections
            # beyond a full accept queue are only taken in after SYN-ACK
            # retransmits (seconds).
            deadline = time.monotonic() + 5
            while open_fds(pid) < base_fds + i - 1 and time.monotonic() < deadline:
                time.sleep(0.002)
    # Wait until the node has accepted every connection: a connection the
    # client sees as open may still sit in the node's (overflowed) accept queue.
    deadline = time.monotonic() + 60
    while open_fds(pid) < base_fds + watches:
        if time.monotonic() > deadline:
            print(f"warning: the node took in {open_fds(pid) - base_fds} of {watches} connections")
            break
        time.sleep(0.05)
    return socks


def hold_native(port: int, watches: int) -> list[tuple[socket.socket, int]]:
    """N WAITs on /bench/key from the next rev, PER_CONN per connection;
    returns each connection with how many answers it is owed."""
    rev = procs.rev(port) + 1
    conns = []
    for first in range(0, watches, PER_CONN):
        n = min(PER_CONN, watches - first)
        frames = b"".join(
            proto.frame(proto.Request(tag=t, verb=proto.VERBS["WAIT"], path="/bench/key", rev=rev))
            for t in range(n))
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(frames)
        sock.setblocking(False)
        conns.append((sock, n))
    deadline = time.monotonic() + 60
    while watchers(port) < watches:
        if time.monotonic() > deadline:
            print(f"warning: the node holds {watchers(port)} of {watches} WAITs")
            break
        time.sleep(0.1)
    return conns


def watchers(port: int) -> int:
    """The node's ``doozer_watchers`` gauge (/metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith("doozer_watchers "):
                return int(float(line.split()[1]))
    return 0


def settled_rss(pid: int) -> int:
    """The node's RSS once it stops growing (it has taken every request in)."""
    last, stable = -1, 0
    deadline = time.monotonic() + 15
    while stable < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = procs.rss_kib(pid)
        stable = stable + 1 if now == last else 0
        last = now
    return last


def wake(port: int, pid: int, socks: list[socket.socket],
         read: Callable[[socket.socket], Optional[bool]]) -> tuple[float, float, int]:
    """Write the key, then read every socket until ``read`` says it is done
    (True: its answers were the event, False: they were not; None: more
    to come). Returns (seconds until the last socket was done, the node's
    CPU seconds meanwhile, sockets whose answers were not the event)."""
    poller = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    waiting = len(socks)
    wrong = 0
    last = 0.0
    cpu0 = cpu_seconds([pid])
    start = time.monotonic()
    # The write from another thread: this one is already waiting in epoll.
    threading.Thread(target=procs.put, args=(port, "/bench/key", b"wake up")).start()
    deadline = start + 300
    while waiting and time.monotonic() < deadline:
        for fd, _ in poller.poll(1.0):
            done = read(by_fd[fd])
            if done is None:
                continue
            last = time.monotonic()
            wrong += not done
            poller.unregister(fd)
            waiting -= 1
    used = cpu_seconds([pid]) - cpu0
    if waiting:
        raise SystemExit(f"{waiting} connections were not answered within 300 s")
    return last - start, used, wrong


def read_http(sock: socket.socket) -> bool:
    """One HTTP watch's answer: its first bytes are enough."""
    data = sock.recv(65536)
    return data.startswith(b"HTTP/1.1 200") and b'"op":"set"' in data


class NativeReader:
    """Reads the WAIT answers owed on each connection (frames counted, not
    decoded; the last one of each is checked)."""

    def __init__(self, conns: list[tuple[socket.socket, int]]) -> None:
        self.owed = {s.fileno(): [n, b""] for s, n in conns}

    def __call__(self, sock: socket.socket) -> Optional[bool]:
        entry = self.owed[sock.fileno()]
        buf = entry[1] + sock.recv(1 << 20)
        ok = True
        while len(buf) >= 4 and len(buf) >= 4 + proto.frame_length(buf[:4]):
            size = proto.frame_length(buf[:4])
            frame, buf = buf[4:4 + size], buf[4 + size:]
            entry[0] -= 1
            if entry[0] == 0:
                ok = proto.Response.FromString(frame).value == b"wake up"
        entry[1] = buf
        return ok if entry[0] == 0 else None


def run(port: int, pid: int, watches: int, native: bool) -> None:
    time.sleep(0.5)  # let the node close the connections of the requests so far
    base = procs.rss_kib(pid)
    if native:
        conns = hold_native(port, watches)
        held = settled_rss(pid)
        socks = [s for s, _ in conns]
        elapsed, used, wrong = wake(port, pid, socks, NativeReader(conns))
    else:
        socks = hold(port, pid, watches)
        held = settled_rss(pid)
        elapsed, used, wrong = wake(port, pid, socks, read_http)
    for s in socks:
        s.close()
    if wrong:
        print(f"warning: {wrong} answers were not the event")
    per_watch = (held - base) / watches
    print(f"watches held:                {watches}" + (f" (doozerd-protocol WAITs, {PER_CONN} per connection)" if native else " (HTTP)"))
    print(f"write -> all responses:      {elapsed:.3f} s (target <= 0.2 s)")
    print(f"node CPU meanwhile:          {used:.2f} s (/proc ticks of 10 ms)")
    print(f"node RSS before / holding:   {base} KiB / {held} KiB")
    print(f"RSS per watch:               {per_watch:.1f} KiB (target <= 10 KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watches", type=int, default=10000)
    parser.add_argument("--native", action="store_true", help="hold them as doozerd-protocol WAITs")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.watches + 100 and not args.native:
        raise SystemExit(f"raise the open-files limit (ulimit -n) above {args.watches + 100}")
    # Every watch comes from 127.0.0.1, over the default --max-conns-per-ip
    # (1,000): allow them all, as an operator of such a node would.
    conns = str(args.watches + 100)
    with procs.doozer_node("--max-conns", conns, "--max-conns-per-ip", conns) as (port, proc):
        run(port, proc.pid, args.watches, args.native)


if __name__ == "__main__":
    main()
