"""What the hand-off to the storage thread costs a busy reactor.

    python bench/writer_handoff.py [--dir DIR] [--clients 1,20] [--seconds 3]
        [--work 60] [--rounds 2]

The node's durable write path without the node: a Twisted reactor runs
``--clients`` loops, each of which does ``--work`` µs of Python (a
stand-in for parsing a request and running a pump), appends a 2 KiB
payload to the log's :class:`~doozer.storage.writer.Writer` (a real
:class:`~doozer.storage.segments.SegmentedLog` under ``--dir``, synced,
through the :class:`~doozer.storage.writer.ThreadRunner`, as a node's data
dir does), and when the append is durable sends a datagram over loopback
(a syscall that gives the GIL up, as the node's sends do) and goes round
again. One client measures the hand-off's latency; many measure what it
costs a reactor that is never idle.

Prints per loop (a "write"): writes/s, the process's CPU (both threads),
voluntary and involuntary context switches, batches per write and the
batch round trip (from the pump's append to the reactor learning it is
durable) p50/p99. Put ``--dir`` on the disk you mean (not tmpfs). Figures
are printed, never pass/fail; compare trees by running this file with
``PYTHONPATH`` set to each.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor as _reactor  # noqa: E402

from doozer.storage import segments  # noqa: E402
from doozer.storage.writer import ThreadRunner, Writer  # noqa: E402

PAYLOAD = b"p" * 2048


def spin(us: float) -> None:
    """About ``us`` µs of Python on the calling thread."""
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


def run(directory: str, clients: int, seconds: float, work: float) -> dict:
    reactor = _reactor
    log = segments.SegmentedLog(directory, [], fsync=True)
    writer = Writer(log, ThreadRunner(reactor), reactor)  # type: ignore[arg-type]
    trips: list[float] = []
    writer.observers.append(lambda b: trips.append(b.seconds))
    writer.start()
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    target = sink.getsockname()
    state = {"writes": 0, "counting": False, "stop": False}

    def loop() -> None:
        if state["stop"]:
            return
        spin(work)
        d = writer.append(PAYLOAD)
        writer.flush()
        d.addCallback(done)

    def done(_: object) -> None:
        out.sendto(b"x" * 200, target)
        try:
            while True:
                sink.recv(512)
        except BlockingIOError:
            pass
        if state["counting"]:
            state["writes"] += 1
        reactor.callLater(0, loop)

    marks: dict = {}

    def start_counting() -> None:
        state["counting"] = True
        trips.clear()
        marks["batches"] = writer.synced_batches
        marks["t"] = time.perf_counter()
        marks["ru"] = resource.getrusage(resource.RUSAGE_SELF)

    def stop_counting() -> None:
        marks["ru1"] = resource.getrusage(resource.RUSAGE_SELF)
        marks["t1"] = time.perf_counter()
        marks["batches1"] = writer.synced_batches
        state["counting"] = False
        state["stop"] = True
        writer.stop().addBoth(lambda _: reactor.crash())

    for _ in range(clients):
        reactor.callLater(0, loop)
    reactor.callLater(0.5, start_counting)
    reactor.callLater(0.5 + seconds, stop_counting)
    reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]
    out.close()
    sink.close()
    ru0, ru1 = marks["ru"], marks["ru1"]
    writes = max(1, state["writes"])
    trips.sort()
    return {
        "writes_s": writes / (marks["t1"] - marks["t"]),
        "cpu_us": ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) / writes * 1e6,
        "vcsw": (ru1.ru_nvcsw - ru0.ru_nvcsw) / writes,
        "ivcsw": (ru1.ru_nivcsw - ru0.ru_nivcsw) / writes,
        "batches": (marks["batches1"] - marks["batches"]) / writes,
        "trip_p50": trips[len(trips) // 2] * 1e3 if trips else 0.0,
        "trip_p99": trips[int(len(trips) * 0.99)] * 1e3 if trips else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="where the log goes (default: the temp dir)")
    parser.add_argument("--clients", default="1,20")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--work", type=float, default=60.0, help="µs of Python per write")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for r in range(args.rounds):
        for clients in [int(c) for c in args.clients.split(",")]:
            with tempfile.TemporaryDirectory(prefix="doozer-handoff-", dir=args.dir) as d:
                f = run(d, clients, args.seconds, args.work)
            print(f"round {r + 1} clients {clients:3d}: {f['writes_s']:7.0f} writes/s  "
                  f"cpu {f['cpu_us']:5.0f} us  vcsw {f['vcsw']:4.2f} ivcsw {f['ivcsw']:4.2f}  "
                  f"batches {f['batches']:4.2f}  round trip p50 {f['trip_p50']:5.2f} "
                  f"p99 {f['trip_p99']:5.2f} ms  (per write)", flush=True)


if __name__ == "__main__":
    main()
