"""Lease keepalives of a 3-node cluster, and what idle leases cost, beside etcd.

    python bench/lease_keepalive.py [--seconds 5] [--clients 1,10,50]
        [--leases 1000] [--lease-clients 50] [--idle 10000] [--no-etcd]
        [--disk DIR [--no-memory]] [--profile PREFIX]

Starts three real ``twistd -n doozer --peers A,B,C`` processes on loopback
(as ``bench/cluster_write.py`` does: free ports, a cluster key, no access
log) and, in the same run, a 3-member etcd cluster (data on tmpfs, or under
``--disk``). All the clusters run from the start, and each point below is
taken on each cluster in turn, so that the machine's other load changing
between points does not fall on one of them only. On each it measures:

1. **Idle leases** (first, on the freshly formed cluster, after 3 s of
   unmeasured keepalives to let it settle): the resident memory (VmRSS) of
   every server process, then ``--idle`` leases (ttl 600 s) granted by 50
   clients, 2 s of quiet, every RSS again. The difference over the count is
   the cost of one idle lease on each node; the grants/s and p50/p99 of the
   grants are printed too (a grant is a write: it takes a rev). The idle
   leases stay for the rest of the run (ttl 600 s: none expires in it).
2. **Keepalives, one lease per client**, for each ``--clients`` count: each
   client grants one lease (untimed), then renews it one request at a time
   on its own keep-alive connection for 1 s of warm-up and ``--seconds``
   measured: keepalives/s and latency p50/p99. Afterwards it revokes it.
3. **Keepalives, many leases**: ``--leases`` leases renewed round-robin by
   ``--lease-clients`` clients (each its own share, one request at a time).
4. **The reference**: committed writes on the same cluster, as
   ``bench/cluster_write.py`` makes them (``PUT`` of 100 bytes,
   ``--lease-clients`` clients): a doozer keepalive is one consensus round
   like a write, so the two should run at about the same rate.

Clients are spread round-robin over the three nodes, and a client grants
its leases through the node it renews them at. doozer: ``POST /v1/lease``,
``POST /v1/lease/<id>/keepalive``, ``DELETE /v1/lease/<id>`` (SPEC §9); a
keepalive is answered once the RENEW carrying it is decided and applied
(the keepalives a node receives in one reactor turn share one RENEW), so
every counted keepalive went through one consensus round. etcd 3.4.23
through its v3 HTTP/JSON gateway: ``POST /v3/lease/grant {"TTL": S}``,
``POST /v3/lease/keepalive {"ID": id}`` (one message per request on the
gateway's stream: the answer is a one-chunk stream result, the connection
stays open), ``POST /v3/lease/revoke``; a keepalive answered without a
``TTL`` (lease not found) counts as an error. etcd renews a lease on its
leader in memory, without a Raft entry (a follower forwards the renewal to
the leader over its peer HTTP): it is the cheaper protocol, and doozer's
guarantee without a leader or synchronised clocks (CONSENSUS.md §L) is what
the difference buys.

The load generator is this file with ``--loadgen``: one separate process,
one asyncio task per client, raw HTTP/1.1 on asyncio streams (no HTTP
library, the least CPU a Python driver can spend per request). It shares
the machine's cores with the servers, for doozer and etcd alike, and
reports its CPU over the timed window (``loadgen cpu``, share of one core):
near 100 % means the driver, not the cluster, was the limit. The server CPU
per keepalive (user + system of the three processes over the timed window)
depends less on the machine's other load than the rates do.

With ``--disk DIR`` a doozer cluster whose nodes keep ``--data-dir``s under
DIR is measured too, and etcd's data goes under DIR: both on the same disk.
``--profile PREFIX`` runs the doozer nodes under cProfile (see
``bench/cluster_write.py``). Figures are printed, never pass/fail.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster_write  # noqa: E402
import procs  # noqa: E402
from procs import Cluster  # noqa: E402
from rawhttp import read_response  # noqa: E402

WARMUP = 1.0
SETTLE = 3.0
QUIET = 2.0
IDLE_TTL = 600
KEEPALIVE_TTL = 600  # no lease of the run expires in it; each is revoked after its point
IDLE_CLIENTS = 50


# ----------------------------------------------------------------------
# the load generator (runs in its own process)


def _request(method: str, path: str, host: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if body or method != "GET":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


class Api:
    """The three lease calls of one server kind, as raw requests."""

    def __init__(self, kind: str, host: str) -> None:
        self.kind, self.host = kind, host

    def grant(self, ttl: int) -> bytes:
        if self.kind == "doozer":
            return _request("POST", "/v1/lease", self.host, json.dumps({"ttl": ttl}).encode())
        return _request("POST", "/v3/lease/grant", self.host, json.dumps({"TTL": ttl}).encode())

    def granted(self, body: bytes) -> str:
        doc = json.loads(body)
        return str(doc["id"] if self.kind == "doozer" else doc["ID"])

    def keepalive(self, lease: str) -> bytes:
        if self.kind == "doozer":
            return _request("POST", f"/v1/lease/{lease}/keepalive", self.host, b"")
        return _request("POST", "/v3/lease/keepalive", self.host,
                        json.dumps({"ID": lease}).encode())

    def renewed(self, status: int, body: bytes) -> bool:
        # etcd answers 200 with no TTL when the lease is not found
        return status == 200 and (self.kind == "doozer" or b'"TTL"' in body)

    def revoke(self, lease: str) -> bytes:
        if self.kind == "doozer":
            return _request("DELETE", f"/v1/lease/{lease}", self.host)
        return _request("POST", "/v3/lease/revoke", self.host, json.dumps({"ID": lease}).encode())


def loadgen(kind: str, mode: str, targets: list[str], clients: int, leases: int,
            seconds: float, ttl: int) -> dict:
    """``mode`` "grant": grant ``leases`` leases and keep them; "keepalive":
    grant them, print ``granted``, renew them round-robin for WARMUP +
    ``seconds``, revoke them. Prints one JSON line of figures at the end."""
    import asyncio
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    lat: list[float] = []
    errors: list[int] = []
    window: dict[str, float] = {}
    granted = asyncio.Event()
    ready = [0]
    revoke_errors = [0]

    async def client(i: int) -> None:
        addr = targets[i % len(targets)]
        host, port = addr.rsplit(":", 1)
        api = Api(kind, addr)
        reader, writer = await asyncio.open_connection(host, int(port))

        async def call(request: bytes) -> tuple[int, bytes]:
            writer.write(request)
            return await read_response(reader)

        mine: list[str] = []
        for _ in range(i, leases, clients):
            t0 = time.perf_counter()
            status, body = await call(api.grant(ttl))
            if status != 200:
                raise RuntimeError(f"grant at {addr}: {status} {body[:200]!r}")
            mine.append(api.granted(body))
            if mode == "grant":
                lat.append(time.perf_counter() - t0)
        ready[0] += 1
        if ready[0] == clients:  # the last to finish granting opens the window
            t = time.perf_counter()
            window.update(start=t + WARMUP, end=t + WARMUP + seconds)
            granted.set()
        await granted.wait()
        if mode == "keepalive" and mine:
            start, end = window["start"], window["end"]
            n = 0
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    break
                status, body = await call(api.keepalive(mine[n % len(mine)]))
                t1 = time.perf_counter()
                n += 1
                if t0 < start:
                    continue
                if api.renewed(status, body):
                    lat.append(t1 - t0)
                else:
                    errors.append(status)
            for lease in mine:
                status, _ = await call(api.revoke(lease))
                revoke_errors[0] += status != 200
        writer.close()

    async def clock() -> None:
        await granted.wait()
        print("granted", flush=True)  # the orchestrator times the servers' CPU from here
        await asyncio.sleep(WARMUP)
        c0 = cpu()
        await asyncio.sleep(seconds)
        window["cpu"] = (cpu() - c0) / seconds

    async def run() -> dict:
        t, c0 = time.perf_counter(), cpu()
        tasks = [client(i) for i in range(clients)]
        if mode == "keepalive":
            tasks.append(clock())
        await asyncio.gather(*tasks)
        took = time.perf_counter() - t
        lat.sort()
        return {
            "count": len(lat),
            "per_s": len(lat) / seconds if mode == "keepalive" else len(lat) / took,
            "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
            "errors": len(errors),
            "error_statuses": {str(c): errors.count(c) for c in sorted(set(errors))},
            "revoke_errors": revoke_errors[0],
            "loadgen_cpu": window.get("cpu", (cpu() - c0) / took),
        }

    return asyncio.run(run())


def run_loadgen(kind: str, mode: str, cluster: Cluster, clients: int, leases: int,
                seconds: float, ttl: int) -> dict:
    """Run the load generator; for "keepalive", also the servers' CPU per
    keepalive over its timed window (and for doozer, keepalives per
    consensus instance and datagrams per keepalive)."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--loadgen", kind, "--mode", mode,
         "--targets", ",".join(cluster.addrs), "--clients", str(clients),
         "--leases", str(leases), "--seconds", str(seconds), "--ttl", str(ttl)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    try:
        served: dict[str, Any] = {}
        line = proc.stdout.readline()
        if mode == "keepalive" and line.strip() == "granted":
            time.sleep(WARMUP)
            counts0 = cluster_write.consensus_counts(cluster) if kind == "doozer" else None
            cpu0 = cluster_write.cpu_seconds(cluster.pids)
            time.sleep(seconds)
            served["cpu"] = cluster_write.cpu_seconds(cluster.pids) - cpu0
            if counts0 is not None:
                sent, applied = cluster_write.consensus_counts(cluster)
                served["sent"], served["instances"] = sent - counts0[0], applied - counts0[1]
            line = proc.stdout.readline()
        out, _ = proc.communicate(timeout=seconds + 300)
        proc.stdout.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"the {kind} load generator failed ({mode})")
    result: dict[str, Any] = json.loads((line + out).strip().splitlines()[-1])
    n = result["count"] + result["errors"]
    if "cpu" in served and n:
        result["server_cpu_us"] = served["cpu"] / n * 1e6
    if "instances" in served and n:
        result["per_instance"] = n / max(1, served["instances"])
        result["datagrams_per_keepalive"] = served["sent"] / n
    return result


# ----------------------------------------------------------------------
# one cluster's figures


def measure(clusters: dict[str, tuple[str, Cluster]], args: argparse.Namespace,
            counts: list[int]) -> dict[str, dict[str, Any]]:
    """Every figure of every cluster, in the order the docstring gives.
    All clusters run from the start; each point is taken on each cluster in
    turn, so that a change in the machine's other load between points falls
    on all of them rather than on whichever was measured last."""
    out: dict[str, dict[str, Any]] = {name: {"one_each": {}} for name in clusters}
    for name, (kind, cluster) in clusters.items():
        run_loadgen(kind, "keepalive", cluster, 10, 10, SETTLE, KEEPALIVE_TTL)  # settle
        r = out[name]
        r["rss_before"] = [procs.rss_kib(p) for p in cluster.pids]
        r["grant"] = run_loadgen(kind, "grant", cluster, IDLE_CLIENTS, args.idle, 0, IDLE_TTL)
        time.sleep(QUIET)
        r["rss_after"] = [procs.rss_kib(p) for p in cluster.pids]
    for n in counts:
        for name, (kind, cluster) in clusters.items():
            out[name]["one_each"][n] = run_loadgen(kind, "keepalive", cluster, n, n,
                                                   args.seconds, KEEPALIVE_TTL)
    for name, (kind, cluster) in clusters.items():
        out[name]["many"] = run_loadgen(kind, "keepalive", cluster, args.lease_clients,
                                        args.leases, args.seconds, KEEPALIVE_TTL)
    for name, (kind, cluster) in clusters.items():
        out[name]["rss_end"] = [procs.rss_kib(p) for p in cluster.pids]
        # the reference: committed writes (bench/cluster_write.py's PUTs)
        out[name]["put"] = cluster_write.measure(kind, cluster, args.lease_clients,
                                                 args.seconds)
    return out


def per_lease_bytes(r: dict[str, Any], idle: int) -> list[float]:
    return [(a - b) * 1024 / idle for a, b in zip(r["rss_after"], r["rss_before"])]


# ----------------------------------------------------------------------
# the report


def _num(v: Optional[float], fmt: str = ",.0f") -> str:
    return "-" if v is None else format(v, fmt)


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace,
           counts: list[int]) -> None:
    names = list(results)
    etcd = next((n for n in names if n.startswith("etcd")), None)
    print(f"3-node clusters on loopback, {os.cpu_count()} cores shared by the servers and the "
          f"load generator; {args.seconds:g} s per point after {WARMUP:g} s of warm-up")
    print("load generator: one separate asyncio process, raw HTTP/1.1 keep-alive connections, "
          "one request at a time per client, clients round-robin over the 3 nodes")
    if etcd:
        where = f"data under {args.disk}" if args.disk else "data on tmpfs"
        print(f"etcd: {procs.etcd_version()}, v3 JSON gateway (/v3/lease/grant, /v3/lease/keepalive: one "
              f"message per request on one keep-alive connection), {where}")
    # one ratio column per doozer cluster, against etcd
    ours = [i for i, n in enumerate(names) if n != etcd] if etcd else []
    ratio_head = "".join(f"{'  ' + names[i] + '/etcd':>22}" for i in ours)

    def row(label: str, values: list[Optional[float]], fmt: str = ",.0f") -> None:
        cells = "".join(f"{_num(v, fmt):>20}" for v in values)
        ratio = "".join(f"{_ratio(values[i], values[names.index(etcd)]):>22}" for i in ours)
        print(f"{label:<36}{cells}{ratio}")

    def rate_rows(label: str, pts: list[dict[str, Any]]) -> None:
        """A point's rate, then its p50 and p99 latencies."""
        row(label, [p["per_s"] for p in pts])
        row("  p50 ms", [p["p50_ms"] for p in pts], ".2f")
        row("  p99 ms", [p["p99_ms"] for p in pts], ".2f")

    print(f"\n{'':<36}" + "".join(f"{n:>20}" for n in names) + ratio_head)
    for n in counts:
        rate_rows(f"keepalives/s, {n} clients x 1 lease",
                  [results[k]["one_each"][n] for k in names])
    rate_rows(f"keepalives/s, {args.leases} leases / {args.lease_clients} cl",
              [results[k]["many"] for k in names])
    rate_rows(f"PUT writes/s, {args.lease_clients} clients (reference)",
              [results[k]["put"] for k in names])
    rate_rows(f"grants/s, {args.idle} by {IDLE_CLIENTS} clients",
              [results[k]["grant"] for k in names])
    costs = {k: per_lease_bytes(results[k], args.idle) for k in names}
    row("RSS per idle lease, bytes (mean of 3)", [sum(c) / len(c) for c in costs.values()])

    print(f"\nRSS before / after {args.idle} idle leases (ttl {IDLE_TTL} s), KiB, and bytes "
          "per lease, each process:")
    for k in names:
        r = results[k]
        cells = ", ".join(f"{b:,} -> {a:,} ({c:,.0f} B)" for b, a, c in
                          zip(r["rss_before"], r["rss_after"], costs[k]))
        print(f"  {k}: {cells}")
    print("RSS after the keepalive points (before the PUT reference), KiB, each process: "
          + "; ".join(f"{k} " + ", ".join(f"{v:,}" for v in results[k]["rss_end"])
                      for k in names))
    print("server cpu per keepalive (3 processes, us): " + "; ".join(
        f"{k} " + ", ".join(f"{n} cl {_num(results[k]['one_each'][n].get('server_cpu_us'))}"
                            for n in counts)
        + f", {args.leases} leases {_num(results[k]['many'].get('server_cpu_us'))}"
        + f"; per PUT at {args.lease_clients} cl {_num(results[k]['put'].get('server_cpu_us'))}"
        for k in names))
    print("doozer keepalives per consensus instance, datagrams per keepalive: " + "; ".join(
        f"{k} " + ", ".join(
            f"{label} {p['per_instance']:.1f}, {p['datagrams_per_keepalive']:.2f}"
            for label, p in [*((f"{n} cl", results[k]["one_each"][n]) for n in counts),
                             (f"{args.leases} leases", results[k]["many"])]
            if "per_instance" in p)
        for k in names if not k.startswith("etcd")))
    print("loadgen cpu over the timed window (share of one core): " + "; ".join(
        f"{k} " + ", ".join(f"{n} cl {results[k]['one_each'][n]['loadgen_cpu']:.0%}"
                            for n in counts)
        + f", {args.leases} leases {results[k]['many']['loadgen_cpu']:.0%}" for k in names))
    for k in names:
        for label, p in [*((f"{n} clients", results[k]["one_each"][n]) for n in counts),
                         (f"{args.leases} leases", results[k]["many"])]:
            if p["errors"] or p["revoke_errors"]:
                print(f"note: {k}, {label}: {p['errors']} keepalives not renewed "
                      f"(HTTP statuses {p['error_statuses']}; etcd's 200 without a TTL is "
                      f"a lease not found), {p['revoke_errors']} revokes failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,10,50",
                        help="client counts of the one-lease-per-client points")
    parser.add_argument("--leases", type=int, default=1000)
    parser.add_argument("--lease-clients", type=int, default=50)
    parser.add_argument("--idle", type=int, default=10000, help="idle leases for the RSS figure")
    procs.add_cluster_options(parser)
    parser.add_argument("--loadgen", choices=("doozer", "etcd"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("grant", "keepalive"), help=argparse.SUPPRESS)
    parser.add_argument("--targets", help=argparse.SUPPRESS)
    parser.add_argument("--ttl", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    if args.loadgen:
        print(json.dumps(loadgen(args.loadgen, args.mode, args.targets.split(","), counts[0],
                                 args.leases, args.seconds, args.ttl)))
        return

    clusters: dict[str, tuple[str, Cluster]] = {}
    with contextlib.ExitStack() as stack:
        for name, disk, prof in procs.doozer_runs(args):
            clusters[name] = ("doozer", stack.enter_context(
                procs.doozer_cluster(args.doozer_args.split(), disk, prof)))
        etcd = None if args.no_etcd else procs.start_etcd(stack, args.disk)
        if etcd is not None:
            clusters[procs.etcd_name(args)] = ("etcd", etcd)
        results = measure(clusters, args, counts)
    report(results, args, counts)


if __name__ == "__main__":
    main()
