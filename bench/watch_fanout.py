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
import resource
import time

import procs


async def open_watch(port: int, started: list) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /v1/watch?glob=/bench/key&timeout=300 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    await writer.drain()
    started[0] += 1
    await reader.readuntil(b"\r\n\r\n")
    arrived = time.monotonic()
    writer.close()
    return arrived


async def run(port: int, pid: int, watches: int) -> None:
    base = procs.rss_kib(pid)
    started = [0]
    tasks = []
    for i in range(watches):
        tasks.append(asyncio.create_task(open_watch(port, started)))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    while started[0] < watches:
        await asyncio.sleep(0.05)
    # Wait until the node has taken every request in (its memory stops growing).
    last, stable = -1, 0
    while stable < 5:
        await asyncio.sleep(0.2)
        now = procs.rss_kib(pid)
        stable = stable + 1 if now == last else 0
        last = now
    held = procs.rss_kib(pid)
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    await loop.run_in_executor(None, procs.put, port, "/bench/key", b"wake up")
    done = await asyncio.gather(*tasks)
    elapsed = max(done) - start
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
    with procs.doozer_node() as (port, proc):
        asyncio.run(run(port, proc.pid, args.watches))


if __name__ == "__main__":
    main()
