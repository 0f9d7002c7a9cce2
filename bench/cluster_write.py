"""Committed write throughput and latency of a 3-node cluster, beside etcd.

    python bench/cluster_write.py [--seconds 5] [--clients 1,10,50] [--no-etcd]
        [--disk DIR [--no-memory]] [--profile PREFIX]

Starts three real ``twistd -n doozer --peers A,B,C`` processes on loopback
(free ports, a cluster key unless told --insecure-peers, no access log), waits until ``/v1/cluster``
on every node shows three members, then for each client count runs a load
generator for ``--seconds`` (after a 1 s warm-up that is not counted) and
prints committed writes/s and p50/p99 latency, and each server process's
peak resident set (``VmHWM``) after the point. Every client writes with
``PUT /v1/store/bench/<client>/<n>`` (a 100-byte body) on its own keep-alive
connection, one request at a time, and clients are spread round-robin over
the three nodes. A PUT is answered only after its instance is decided and
applied, so every counted write is committed. Before the first point, 3 s of
unmeasured writes from 10 clients let the cluster settle: the two nodes
that attached by snapshot become voters only α (50) instances after they
claimed their CAL slots, and the log moves in window-sized jumps while
they do; etcd gets the same treatment.

When ``etcd`` is installed (Debian ``etcd-server``, v3.4), the same run
starts a 3-member etcd cluster on loopback and measures it with the same
client code through etcd's v3 HTTP/JSON gateway (``POST /v3/kv/put`` with
a base64 key and the same 100-byte value), also spread over the three
members; a put is answered after Raft commits it. etcd fsyncs its WAL and
doozer keeps everything in memory, so etcd's data directories are put on
tmpfs (``/dev/shm``) where fsync costs nearly nothing: both then measure
consensus, not the disk. etcd 3.4 has no ``--unsafe-no-fsync``.

The load generator: a separate Python process (this file with
``--loadgen``) running one asyncio task per client over raw HTTP/1.1 on
``asyncio`` streams; no HTTP library, so one process drives several
thousand requests/s on one core. It is separate so that its CPU shows up
apart from the orchestrator's, and one process (not several) so that it
takes at most one of the machine's two cores away from the servers. It
reports its own CPU use (``loadgen cpu``): near 100 % would mean the load
generator, not the cluster, was the limit. The servers and the load
generator share the machine's cores, for doozer and for etcd alike.

With ``--disk DIR`` the run also measures a doozer cluster whose nodes keep
``--data-dir``s under DIR (fsyncing before the messages that need it, with
group commit: SPEC §8), and puts etcd's data dirs under DIR instead of
tmpfs, so that both fsync to the same disk; the memory-only doozer figures
stay beside them. Each durable point gets a cluster of its own, and each
node's log line at stop (``storage: N batches, fsync p50/p99 ...``, with the
fsync latency histogram and records and bytes per batch) is printed for it.

Besides throughput, every point prints counts that move far less with the
machine's other load: the servers' CPU per write and their context switches
per write (every thread, and the processes' children: a durable node writes
its log from a child process, and a hand-off to it costs some of each),
and for doozer the datagrams and, durable, the fsync batches per write
(``doozer_fsync_seconds_count`` of each node's ``/metrics``).

Figures are printed, never pass/fail.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import procs  # noqa: E402
from procs import Cluster  # noqa: E402
from rawhttp import read_response  # noqa: E402

sys.path.insert(0, procs.ROOT)  # doozer itself, for its peer tokens (/_peer/consensus)

VALUE = b"v" * 100
WARMUP = 1.0
SETTLE = 3.0


# ----------------------------------------------------------------------
# the load generator (runs in its own process)


def loadgen(kind: str, targets: list[str], clients: int, seconds: float) -> dict:
    import asyncio
    import resource

    def request(client: int, n: int, host: str) -> bytes:
        if kind == "doozer":
            return (  # Host: the node's own address (it answers no other, SPEC §12)
                f"PUT /v1/store/bench/{client}/{n % 16} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Length: {len(VALUE)}\r\n\r\n"
            ).encode() + VALUE
        key = base64.b64encode(f"/bench/{client}/{n % 16}".encode()).decode()
        body = json.dumps({"key": key, "value": base64.b64encode(VALUE).decode()}).encode()
        return (
            f"POST /v3/kv/put HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    done = [0]

    async def client(i: int, start: float, end: float, lat: list, errors: list) -> None:
        host, port = targets[i % len(targets)].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        n = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            writer.write(request(i, n, targets[i % len(targets)]))
            status, _ = await read_response(reader)
            t1 = time.perf_counter()
            n += 1
            done[0] += 1
            if status != 200:
                errors.append(status)
            elif t0 >= start:
                lat.append(t1 - t0)
        writer.close()

    async def run() -> dict:
        lat: list = []
        errors: list = []
        t = time.perf_counter()
        start, end = t + WARMUP, t + WARMUP + seconds
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*(client(i, start, end, lat, errors) for i in range(clients)))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        lat.sort()
        return {
            "writes": len(lat),
            "per_s": len(lat) / seconds,
            "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
            "errors": len(errors),
            "total_writes": done[0],
            "loadgen_cpu": cpu / (time.perf_counter() - t),
        }

    return asyncio.run(run())


def with_children(pids: list[int]) -> list[int]:
    """These processes and their children: a durable doozer node writes its
    log from a child process (doozer/storage/syncer.py), whose CPU is the
    node's too."""
    found = list(pids)
    for pid in pids:
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    found += [int(child) for child in f.read().split()]
        except FileNotFoundError:  # gone meanwhile
            continue
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes and their children."""
    ticks = 0
    for pid in with_children(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def context_switches(pids: list[int]) -> int:
    """Voluntary and involuntary context switches so far, every thread of
    these processes and their children (a hand-off costs some of each)."""
    total = 0
    for pid in with_children(pids):
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/status") as f:
                    total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except FileNotFoundError:
            continue
    return total


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far (``VmHWM``), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0



def fsync_batches(addrs: list[str]) -> int:
    """Batches the nodes' data dirs have synced so far (``/metrics``'
    ``doozer_fsync_seconds_count``; 0 for memory-only nodes)."""
    total = 0
    for addr in addrs:
        text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith("doozer_fsync_seconds_count"):
                total += int(float(line.split()[-1]))
    return total


def consensus_counts(cluster: Cluster) -> tuple[int, int]:
    """Datagrams sent by all nodes so far, and the highest applied instance
    (from each node's ``/_peer/consensus``)."""
    from doozer.server.auth import peer_headers

    sent = applied = 0
    for addr in cluster.addrs:
        headers, _ = peer_headers(cluster.key, b"GET", b"/_peer/consensus", time.time())
        request = urllib.request.Request(
            f"http://{addr}/_peer/consensus",
            headers={k.decode(): v[0].decode() for k, v in headers.items()})
        state = json.loads(urllib.request.urlopen(request, timeout=5).read())
        sent += state["transport"]["stats"]["sent"]
        applied = max(applied, state["applied_seqn"])
    return sent, applied


def measure(kind: str, cluster: Cluster, clients: int, seconds: float) -> dict:
    """One point: the load generator's figures plus the servers' CPU per
    write (and for doozer, datagrams and instances per write: work counts
    that depend far less on the machine's other load than throughput)."""
    counts0 = consensus_counts(cluster) if kind == "doozer" else None
    batches0 = fsync_batches(cluster.addrs) if kind == "doozer" else 0
    cpu0, switches0 = cpu_seconds(cluster.pids), context_switches(cluster.pids)
    result = run_loadgen(kind, cluster.addrs, clients, seconds)
    used = cpu_seconds(cluster.pids) - cpu0
    total = result["total_writes"]
    result["server_cpu_us"] = used / total * 1e6 if total else None
    result["switches_per_write"] = (
        (context_switches(cluster.pids) - switches0) / total if total else None)
    result["peak_rss_mib"] = [peak_rss_mib(pid) for pid in cluster.pids]
    if counts0 is not None and total:
        sent, applied = consensus_counts(cluster)
        result["batches_per_write"] = (fsync_batches(cluster.addrs) - batches0) / total
        result["datagrams_per_write"] = (sent - counts0[0]) / total
        result["writes_per_instance"] = total / max(1, applied - counts0[1])
    return result


def settle(kind: str, cluster: Cluster) -> None:
    """Unmeasured writes right after the cluster formed (see the docstring)."""
    run_loadgen(kind, cluster[0], 10, SETTLE)


def run_loadgen(kind: str, targets: list[str], clients: int, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--loadgen", kind,
         "--targets", ",".join(targets), "--clients", str(clients),
         "--seconds", str(seconds)],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# ----------------------------------------------------------------------


def _fmt(r: dict | None) -> str:
    if r is None:
        return f"{'-':>10}{'-':>9}{'-':>9}"
    p50 = f"{r['p50_ms']:.2f}" if r["p50_ms"] is not None else "-"
    p99 = f"{r['p99_ms']:.2f}" if r["p99_ms"] is not None else "-"
    return f"{r['per_s']:>10.0f}{p50:>9}{p99:>9}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,10,50")
    procs.add_cluster_options(parser)
    parser.add_argument("--loadgen", choices=("doozer", "etcd"), help=argparse.SUPPRESS)
    parser.add_argument("--targets", help=argparse.SUPPRESS)
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    if args.loadgen:
        print(json.dumps(loadgen(args.loadgen, args.targets.split(","), counts[0], args.seconds)))
        return

    results: dict[str, dict[int, dict]] = {}
    storage: dict[int, list[str]] = {}  # clients -> each durable node's summary
    for name, disk, prof in procs.doozer_runs(args):
        results[name] = {}
        # A durable cluster per point, so that each point's fsync histogram
        # (logged by each node when it stops) is its own.
        for points in [counts] if disk is None else [[n] for n in counts]:
            logs: list[str] = []
            with procs.doozer_cluster(args.doozer_args.split(), disk, prof, logs) as cluster:
                settle("doozer", cluster)
                for n in points:
                    results[name][n] = measure("doozer", cluster, n, args.seconds)
            if disk is not None:
                storage[points[0]] = [storage_summary(log) for log in logs]
    etcd = shutil.which("etcd") and not args.no_etcd
    if etcd:
        name = procs.etcd_name(args)
        results[name] = {}
        with contextlib.ExitStack() as stack:
            etcd_cluster = procs.start_etcd(stack, args.disk)
            if etcd_cluster is not None:
                settle("etcd", etcd_cluster)
                for n in counts:
                    results[name][n] = measure("etcd", etcd_cluster, n, args.seconds)

    print(f"3-node clusters on loopback, {os.cpu_count()} cores, {args.seconds:g} s per point, "
          f"PUT of a 100-byte value, keep-alive, one request at a time per client")
    print("load generator: one separate asyncio process, raw HTTP/1.1")
    if args.disk:
        print(f"disk: doozer --data-dir and etcd's data dir under {args.disk} (fsync on both)")
    if etcd:
        where = f"data under {args.disk}" if args.disk else "data on tmpfs"
        print(f"etcd: {procs.etcd_version()}, v3 JSON gateway POST /v3/kv/put, {where}")
    else:
        print("etcd: not measured (not installed, or --no-etcd)")
    head = f"{'writes/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
    print(f"{'':>8}" + "  ".join(f"{name:^28}" for name in results))
    print(f"{'clients':>8}" + "  ".join(head for _ in results))
    for n in counts:
        print(f"{n:>8}" + "  ".join(_fmt(r.get(n)) for r in results.values()))
    for name, points in results.items():
        for n, r in points.items():
            if r["errors"] or r["loadgen_cpu"] > 0.8:
                print(f"note: {name} at {n} clients: {r['errors']} non-200 answers, "
                      f"load generator cpu {r['loadgen_cpu']:.0%}")
    print("server cpu per write (3 processes and their children, us): " + ", ".join(
        f"{name} {n}: {r['server_cpu_us']:.0f}" for name, points in results.items()
        for n, r in points.items() if r["server_cpu_us"] is not None))
    print("context switches per write (3 processes and their children, all threads): " + ", ".join(
        f"{name} {n}: {r['switches_per_write']:.1f}" for name, points in results.items()
        for n, r in points.items() if r["switches_per_write"] is not None))
    print("fsync batches per write (3 nodes): " + ", ".join(
        f"{name} {n}: {r['batches_per_write']:.2f}" for name, points in results.items()
        for n, r in points.items() if r.get("batches_per_write")))
    print("peak RSS of each server process so far (VmHWM, MiB): " + ", ".join(
        f"{name} {n}: " + "/".join(f"{m:.0f}" for m in r["peak_rss_mib"])
        for name, points in results.items() for n, r in points.items()))
    print("datagrams per write (3 nodes), writes per instance: " + ", ".join(
        f"{name} {n}: {r['datagrams_per_write']:.2f}, {r['writes_per_instance']:.1f}"
        for name, points in results.items() for n, r in points.items()
        if "datagrams_per_write" in r))
    print("loadgen cpu (share of one core): " + ", ".join(
        f"{name} {n}: {r['loadgen_cpu']:.0%}" for name, points in results.items()
        for n, r in points.items()))
    for n, lines in storage.items():
        print(f"doozer --data-dir, {n} clients (each node's log at stop; settling included):")
        for i, line in enumerate(lines):
            print(f"  n{i} {line}")


def storage_summary(log: str) -> str:
    """The ``storage: ...`` line a durable node logs when it stops."""
    for line in reversed(log.splitlines()):
        at = line.find("] storage: ")
        if at >= 0:
            return line[at + 2:]
    return "storage: no summary in the log (did the node stop cleanly?)"


if __name__ == "__main__":
    main()
