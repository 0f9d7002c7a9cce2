"""GET throughput of one node beside a bare Klein JSON handler and etcd, same run.

    python bench/http_get.py [--seconds 10] [--connections 32]

etcd (when installed) is one member with its data on tmpfs, read through
its v2 API (``GET /v2/keys/message``: a local read, as doozer's GET is).
Issue 21's targets: doozer >= 3x the bare Klein handler and >= 1.0x etcd.

Load comes from wrk (Debian package ``wrk``) when installed, else from a
small Python client (which then limits the figures: say so when you quote
them). Prints requests/s for each server, the server process's CPU time per
request (user + system; steadier than the rate on a loaded machine), and
the ratio. Never pass/fail.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import urllib.request

import procs


def wrk(url: str, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", url],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))


def python_load(url: str, seconds: int, connections: int) -> float:
    import asyncio
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()

    async def worker(deadline: float, counts: list) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            await reader.readexactly(length)
            counts[0] += 1
        writer.close()

    async def main() -> float:
        counts = [0]
        start = time.monotonic()
        await asyncio.gather(*(worker(start + seconds, counts) for _ in range(connections)))
        return counts[0] / (time.monotonic() - start)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    load = wrk if shutil.which("wrk") else python_load
    print(f"load generator: {'wrk' if load is wrk else 'python asyncio (install wrk for better figures)'}")
    from cluster_write import cpu_seconds

    with procs.bare_klein() as (port, proc):
        cpu = cpu_seconds([proc.pid])
        bare = load(f"http://127.0.0.1:{port}/v1/store/message", args.seconds, args.connections)
        bare_us = (cpu_seconds([proc.pid]) - cpu) / (bare * args.seconds) * 1e6
    with procs.doozer_node() as (port, proc):
        procs.put(port, "/message", b"hello, world")
        cpu = cpu_seconds([proc.pid])
        ours = load(f"http://127.0.0.1:{port}/v1/store/message", args.seconds, args.connections)
        ours_us = (cpu_seconds([proc.pid]) - cpu) / (ours * args.seconds) * 1e6
    etcd = etcd_us = None
    if shutil.which("etcd"):
        with procs.etcd_cluster(members=1, v2=True) as cluster:
            url = f"http://{cluster.addrs[0]}/v2/keys/message"
            put = urllib.request.Request(url, data=b"value=hello, world", method="PUT")
            put.add_header("Content-Type", "application/x-www-form-urlencoded")
            urllib.request.urlopen(put, timeout=5).read()
            cpu = cpu_seconds(cluster.pids)
            etcd = load(url, args.seconds, args.connections)
            etcd_us = (cpu_seconds(cluster.pids) - cpu) / (etcd * args.seconds) * 1e6
    print(f"{'server':<28}{'GET req/s':>12}{'cpu us/req':>12}")
    print(f"{'bare Klein JSON handler':<28}{bare:>12.0f}{bare_us:>12.0f}")
    if etcd is not None:
        print(f"{'etcd 3.4 GET /v2/keys/...':<28}{etcd:>12.0f}{etcd_us:>12.0f}")
    print(f"{'doozer GET /v1/store/...':<28}{ours:>12.0f}{ours_us:>12.0f}")
    print(f"ratio doozer / bare Klein: {ours / bare:.2f} (target >= 3)")
    if etcd is not None:
        print(f"ratio doozer / etcd: {ours / etcd:.2f} (target >= 1.0)")


if __name__ == "__main__":
    main()
