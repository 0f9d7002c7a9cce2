"""Read and write rates of doozerd's protocol beside the HTTP API, one node, same run.

    python bench/native_vs_http.py [--seconds 5] [--connections 32] [--procs 4] [--depth 8]

One node process on loopback; the same load generator (asyncio, in
``--procs`` processes so that the client is not the bottleneck) drives:

- reads: ``GET`` of one small file (native ``GET``; HTTP ``GET /v1/store/...``,
  keep-alive);
- writes: unconditional ``SET`` of a small file, each connection its own
  key (native ``SET rev=-1``; HTTP ``PUT``);

each connection with one request in flight (closed loop, as an HTTP/1.1
client without pipelining), and for the native protocol also with
``--depth`` requests in flight per connection (pipelined, which doozerd's
protocol allows). Prints requests/s, requests per CPU-second the node
process used (steadier than req/s when the load generator shares the
machine's cores) and the native/HTTP ratios. Never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import procs  # noqa: E402

from doozer.server.doozerd import proto  # noqa: E402

VALUE = b"hello, world"


def _native_frame(tag: int, verb: str, **fields: object) -> bytes:
    return proto.frame(proto.Request(tag=tag, verb=proto.VERBS[verb], **fields))


async def _native_conn(port: int, op: str, key: str, depth: int, deadline: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if op == "read":
        requests = [_native_frame(t, "GET", path="/bench/message") for t in range(depth)]
    else:
        requests = [_native_frame(t, "SET", path=key, rev=-1, value=VALUE) for t in range(depth)]
    done = 0
    writer.write(b"".join(requests))
    while time.monotonic() < deadline:
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        response = proto.Response.FromString(await reader.readexactly(size))
        if response.HasField("err_code"):
            raise RuntimeError(f"native {op} failed: {response}")
        done += 1
        writer.write(requests[response.tag])  # keep `depth` requests in flight
    writer.close()
    return done


async def _http_conn(port: int, op: str, key: str, depth: int, deadline: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if op == "read":
        request = b"GET /v1/store/bench/message HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
    else:
        request = (
            f"PUT /v1/store{key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(VALUE)}\r\n\r\n"
        ).encode() + VALUE
    done = 0
    while time.monotonic() < deadline:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"http {op} failed: {head!r}")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        await reader.readexactly(length)
        done += 1
    writer.close()
    return done


def _worker(args: tuple[str, str, int, int, int, float, int]) -> int:
    """One load process: ``connections`` connections until ``deadline``; returns requests done."""
    kind, op, port, connections, depth, deadline, index = args
    conn = _native_conn if kind == "native" else _http_conn

    async def main() -> int:
        counts = await asyncio.gather(
            *(conn(port, op, f"/bench/w{index}-{i}", depth, deadline) for i in range(connections))
        )
        return sum(counts)

    return asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pool: multiprocessing.pool.Pool, node_pid: int, kind: str, op: str, port: int,
            seconds: float, connections: int, nprocs: int, depth: int = 1) -> tuple[float, float]:
    """Requests/s of one load against the node, and requests per CPU-second the node used."""
    per_proc = max(1, connections // nprocs)
    # A short warm-up, then the measured run.
    for length in (min(1.0, seconds), seconds):
        cpu = cpu_seconds(node_pid)
        start = time.monotonic()
        deadline = start + length
        done = sum(pool.map(_worker, [(kind, op, port, per_proc, depth, deadline, i)
                                      for i in range(nprocs)]))
        elapsed = time.monotonic() - start
        cpu = cpu_seconds(node_pid) - cpu
    return done / elapsed, done / max(cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--procs", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--depth", type=int, default=8, help="native requests in flight per connection")
    args = parser.parse_args()
    rows = []
    with procs.doozer_node() as (port, node), multiprocessing.Pool(args.procs) as pool:
        procs.put(port, "/bench/message", VALUE)
        for op in ("read", "write"):
            for label, kind, depth in (("HTTP", "http", 1), ("native", "native", 1),
                                       (f"native, {args.depth} in flight", "native", args.depth)):
                rate, per_cpu = measure(pool, node.pid, kind, op, port, args.seconds,
                                        args.connections, args.procs, depth)
                rows.append((op, label, rate, per_cpu))
    print(f"one node, loopback, {args.connections} connections from {args.procs} load processes, "
          f"{args.seconds:g} s each, {os.cpu_count()} CPUs")
    print(f"{'op':7}{'protocol':24}{'req/s':>10}{'req per node CPU-s':>20}")
    for op, label, rate, per_cpu in rows:
        print(f"{op:7}{label:24}{rate:>10.0f}{per_cpu:>20.0f}")
    by = {(op, label): (rate, per_cpu) for op, label, rate, per_cpu in rows}
    for op in ("read", "write"):
        (h, hc), (n, nc) = by[(op, "HTTP")], by[(op, "native")]
        print(f"{op}: native / HTTP = {n / h:.2f} in req/s, {nc / hc:.2f} per node CPU-second")


if __name__ == "__main__":
    main()
