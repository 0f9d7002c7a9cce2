"""What one synced append of the log costs, by how its space is allocated.

    python bench/fsync.py [--dir DIR] [--appends 3000] [--size 400] [--rounds 3]

Appends ``--appends`` records of ``--size`` bytes, one at a time, through
the log's own :class:`doozer.storage.records.Appender` (``O_DSYNC``: each
append returns once durable), to a new file in ``--dir`` (put it on the
disk you mean to measure, not tmpfs), in turn:

- ``growing``: a file that grows with each append;
- ``fallocate``: space reserved ahead with ``posix_fallocate`` (what the
  log's segments did before: ext4 makes that unwritten extents, and each
  append into them converts one, a journal commit);
- ``zeros``: space written with zeros ahead (what the segments do now,
  4 MiB at a time, docs/storage.md);
- ``zeros O_SYNC``: the same, the file opened ``O_SYNC`` instead (file
  integrity: timestamps synced too; before, the segments were);

alternated ``--rounds`` times. Prints per append the p50 and p99 latency,
the process's CPU, and the whole machine's busy time (all CPUs, from
``/proc/stat``: it includes the file system's journal thread).

Figures are printed, never pass/fail.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from doozer.storage import records, segments  # noqa: E402


def busy_ticks() -> int:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def appender(path: str, mode: str, total: int) -> records.Appender:
    """An appender to a new record file at ``path``, its space allocated as ``mode`` says."""
    records.create(path)
    if mode == "growing":
        return records.Appender.open(path, records.recover(path), preallocate=0)
    if mode == "fallocate":  # reserved up front: the appender finds it allocated
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, total)
        return records.Appender.open(path, records.recover(path, zero_tail=True), preallocate=0)
    if mode == "zeros O_SYNC":
        with mock.patch.object(records, "O_DSYNC", os.O_SYNC):
            return records.Appender.open(path, records.recover(path), preallocate=segments.PREALLOCATE)
    return records.Appender.open(path, records.recover(path), preallocate=segments.PREALLOCATE)


def run(directory: str, appends: int, size: int, mode: str) -> tuple[float, float, float, float]:
    path = os.path.join(directory, "log")
    log = appender(path, mode, appends * (size + 64) + (1 << 20))
    payload = b"r" * size
    log.append(payload)  # the first allocation ahead is not timed
    latencies = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    busy0 = busy_ticks()
    for _ in range(appends):
        t = time.perf_counter()
        log.append(payload)
        log.sync()
        latencies.append(time.perf_counter() - t)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    busy1 = busy_ticks()
    log.close()
    os.unlink(path)
    latencies.sort()
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    busy = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
    return (latencies[len(latencies) // 2] * 1e6, latencies[int(len(latencies) * 0.99)] * 1e6,
            cpu / appends * 1e6, busy / appends * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="where the file goes (default: the temp dir)")
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--size", type=int, default=400, help="bytes per record")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="doozer-fsync-", dir=args.dir)
    try:
        print(f"{args.appends} synced appends of {args.size} bytes in {directory}, O_DSYNC "
              f"({'available' if records.O_DSYNC else 'missing: write + fsync'})")
        for r in range(args.rounds):
            for mode in ("growing", "fallocate", "zeros", "zeros O_SYNC"):
                p50, p99, cpu, busy = run(directory, args.appends, args.size, mode)
                print(f"round {r + 1} {mode:>12}: p50 {p50:5.0f} us  p99 {p99:6.0f} us  "
                      f"process CPU {cpu:4.0f} us  machine busy {busy:5.0f} us  per append")
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


if __name__ == "__main__":
    main()
