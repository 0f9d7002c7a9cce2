"""One client writing sequentially: latency p50/p99 of a committed write.

    python bench/write_latency.py [--writes 3000]

One keep-alive HTTP connection, one PUT at a time to a one-member node;
every write goes through the sequencer like any other. Never pass/fail.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import time

import procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=3000)
    args = parser.parse_args()
    with procs.doozer_node() as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        took = []
        for i in range(args.writes):
            start = time.perf_counter()
            conn.request("PUT", f"/v1/store/bench/{i % 100}", body=b"x" * 100)
            resp = conn.getresponse()
            resp.read()
            took.append(time.perf_counter() - start)
            assert resp.status == 200, resp.status
        took.sort()
        p50 = took[len(took) // 2] * 1000
        p99 = took[int(len(took) * 0.99)] * 1000
        print(f"sequential writes: {args.writes}")
        print(f"p50 {p50:.2f} ms   p99 {p99:.2f} ms   mean {statistics.mean(took) * 1000:.2f} ms")
        print(f"throughput (one client): {args.writes / sum(took):.0f} writes/s")


if __name__ == "__main__":
    main()
