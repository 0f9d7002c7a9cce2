"""Durable doozer against etcd on the same disk, in alternating pairs.

    python bench/durable_pairs.py --disk DIR [--pairs 5] [--clients 50] [--seconds 5]

One run of ``bench/cluster_write.py --disk`` measures doozer, then etcd, a
minute apart. On a disk whose speed drifts (a VM's, shared) one such ratio
moves by ±15 % from run to run. Here each pair is a fresh 3-node doozer
cluster with ``--data-dir``s under DIR, then a fresh 3-member etcd cluster
with its data under DIR, back to back, measured with the same load generator
(``cluster_write.measure``) at the same client count; the order inside a
pair alternates, so neither side always gets the disk second. It prints
each pair's figures and ratio, then the median, lowest and highest ratio.

Figures are printed, never pass/fail.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import procs  # noqa: E402
from cluster_write import measure, settle  # noqa: E402


def doozer_point(disk: str, clients: int, seconds: float) -> dict:
    with procs.doozer_cluster([], disk, None, []) as cluster:
        settle("doozer", cluster)
        return measure("doozer", cluster, clients, seconds)


def etcd_point(disk: str, clients: int, seconds: float) -> dict:
    with contextlib.ExitStack() as stack:
        cluster = procs.start_etcd(stack, disk)
        if cluster is None:
            raise SystemExit("etcd did not start")
        settle("etcd", cluster)
        return measure("etcd", cluster, clients, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--disk", required=True, help="where both keep their data (fsyncing)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if not shutil.which("etcd"):
        raise SystemExit("etcd is not installed (Debian: etcd-server)")
    print(f"3-node clusters on loopback, {os.cpu_count()} cores, {args.clients} clients, "
          f"{args.seconds:g} s per point; doozer --data-dir and etcd's data under {args.disk}")
    print(f"etcd: {procs.etcd_version()}")
    print(f"{'pair':>4} {'first':>6} {'doozer w/s':>11} {'p50 ms':>7} {'etcd w/s':>9} "
          f"{'p50 ms':>7} {'ratio':>6}")
    ratios = []
    for pair in range(args.pairs):
        doozer_first = pair % 2 == 0
        if doozer_first:
            ours = doozer_point(args.disk, args.clients, args.seconds)
            theirs = etcd_point(args.disk, args.clients, args.seconds)
        else:
            theirs = etcd_point(args.disk, args.clients, args.seconds)
            ours = doozer_point(args.disk, args.clients, args.seconds)
        ratio = ours["per_s"] / theirs["per_s"] if theirs["per_s"] else float("nan")
        ratios.append(ratio)
        print(f"{pair + 1:>4} {'doozer' if doozer_first else 'etcd':>6} {ours['per_s']:>11.0f} "
              f"{ours['p50_ms'] or 0:>7.2f} {theirs['per_s']:>9.0f} {theirs['p50_ms'] or 0:>7.2f} "
              f"{ratio:>6.2f}", flush=True)
    print(f"ratio doozer/etcd over {len(ratios)} pairs: median {statistics.median(ratios):.2f}, "
          f"lowest {min(ratios):.2f}, highest {max(ratios):.2f}")


if __name__ == "__main__":
    main()
