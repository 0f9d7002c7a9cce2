"""Where a node spends its CPU on HTTP PUTs and GETs (issue 21, item 1).

    python bench/profile_http.py [--seconds 8] [--clients 50] [--top 12] [--keep PREFIX]

Starts a 3-node cluster (bench/procs.py's ``doozer_cluster``, every
node under twistd's cProfile), and loads ONE node of it, the profiled one,
with one kind of request from the load generator of
``bench/cluster_write.py`` run in its own process:

- ``put``: ``PUT /v1/store/bench/<client>/<n>`` (100-byte body), each
  answered once its instance is decided and applied (the node is the
  proposer: it pays for its own instances and votes in its peers');
- ``get``: ``GET /v1/store/bench/0/0`` of an existing file.

Each kind gets a fresh cluster. When the nodes stop, their stats are read
and the loaded node's CPU time (``tottime`` of each function, summed by the
module it lives in) is printed per part of the path:

    parse     the HTTP/1.1 parser and channel (twisted/web/http.py; since issue
              21 doozer/server/http/channel.py and httptools' C parser)
    request   twisted.web's Request, Site and resources (server.py, resource.py),
              and the lean requests of the direct routes (http/lean.py, bodycap.py)
    route     Klein and werkzeug's routing
    api       doozer's HTTP handlers and rendering (doozer/server/http)
    limits    doozer's connection limits, sniffer, auth (doozer/server/*.py)
    json      the json module
    node      doozer/node (writes, pump, peers, reads)
    store     doozer/store (apply, watchers, history)
    consensus doozer/consensus (sequencer, acceptor, messages, transport, seal)
    crypto    the cluster key's sealing (cryptography)
    msgpack   msgpack (the peer wire format)
    reactor   twisted.internet (select loop, TCP/UDP transports, Deferreds)
    syscall   the sockets' send/recv calls themselves
    python    builtins and the rest of the standard library
    other     anything else

as shares of the node's busy time (its time in epoll's wait, ``idle``, is
printed apart), then the top functions by own time. cProfile slows every Python call by
about the same factor, so the shares, not the absolute seconds, are the
figure; the throughput printed beside them is under the profiler.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_write  # noqa: E402
import procs  # noqa: E402

PARTS = [
    ("parse", ("twisted/web/http.py", "twisted/web/_newclient", "twisted/web/http_headers.py",
               "doozer/server/http/channel.py")),
    ("request", ("twisted/web/server.py", "twisted/web/resource.py", "twisted/web/",
                 "doozer/server/http/lean.py", "doozer/server/http/bodycap.py")),
    ("route", ("klein/", "werkzeug/")),
    ("api", ("doozer/server/http/",)),
    ("limits", ("doozer/server/",)),
    ("json", ("json/",)),
    ("node", ("doozer/node/",)),
    ("store", ("doozer/store/",)),
    ("consensus", ("doozer/consensus/",)),
    ("crypto", ("cryptography/",)),
    ("msgpack", ("msgpack/",)),
    ("reactor", ("twisted/internet/", "twisted/python/", "twisted/logger/")),
]


def part_of(filename: str, func: str = "") -> str:
    """The part of the path a function belongs to."""
    if "poll' of 'select" in func:
        return "idle"
    if "of '_socket.socket' objects" in func:
        return "syscall"
    if "httptools" in func:
        return "parse"
    name = filename.replace("\\", "/")
    for part, marks in PARTS:
        if any(m in name for m in marks):
            return part
    if name.startswith("~") or "/lib/python3" in name and "site-packages" not in name:
        return "python"
    return "other"


def shares(prof: str) -> tuple[float, dict[str, float], list[tuple[float, str]]]:
    """Busy time (all but ``idle``), own time per part, and the functions
    by own time."""
    stats = pstats.Stats(prof)
    total = 0.0
    by_part: dict[str, float] = {}
    funcs: list[tuple[float, str]] = []
    for (filename, line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        part = part_of(filename, func)
        if part != "idle":
            total += tt
        by_part[part] = by_part.get(part, 0.0) + tt
        short = filename.split("site-packages/")[-1].split("/main/")[-1]
        funcs.append((tt, f"{part:9} {short}:{line}({func})"))
    funcs.sort(reverse=True)
    return total, by_part, funcs


def run(kind: str, seconds: float, clients: int, prefix: str) -> dict:
    """Load node 0 of a profiled cluster with ``kind``; returns the load's figures."""
    with procs.doozer_cluster([], profile=prefix) as cluster:
        target = cluster.addrs[0]
        cluster_write.run_loadgen("doozer", [target] * 3, 10, 1.0)  # settle, as the bench does
        if kind == "put":
            result = cluster_write.run_loadgen("doozer", [target], clients, seconds)
        else:
            result = get_load(target, clients, seconds)
    return result


def get_load(target: str, clients: int, seconds: float) -> dict:
    """GETs of one file from ``clients`` keep-alive connections (wrk when
    installed, else the python load of bench/http_get.py)."""
    import http_get

    url = f"http://{target}/v1/store/bench/0/0"
    load = http_get.wrk if http_get.shutil.which("wrk") else http_get.python_load
    return {"rate": load(url, int(seconds), clients)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--keep", metavar="PREFIX", help="keep the .prof files under this prefix")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="doozer-prof-")
    prefix = os.path.abspath(args.keep) if args.keep else os.path.join(tmp, "p")
    print(f"profile of the loaded node of a 3-node cluster, {args.clients} clients, "
          f"{args.seconds:g} s per kind (cProfile: shares count, absolute rates do not)")
    for kind in ("put", "get"):
        result = run(kind, args.seconds, args.clients, f"{prefix}-{kind}")
        prof = f"{prefix}-{kind}-n0.prof"
        for _ in range(300):  # written when the node's reactor stops (slow on a loaded machine)
            if os.path.exists(prof) and os.path.getsize(prof):
                break
            time.sleep(0.1)
        total, by_part, funcs = shares(prof)
        rate = round(result.get("rate") or result.get("per_s") or 0)
        print(f"\n== {kind.upper()}: {rate} req/s under the profiler; "
              f"{total:.2f} s busy on the node, {1e6 * total / max(1, result.get('total_writes') or rate * args.seconds):.0f} us per request")
        print(f"  idle       {by_part.pop('idle', 0.0):7.2f} s  (waiting in epoll, not counted)")
        for part, tt in sorted(by_part.items(), key=lambda x: -x[1]):
            print(f"  {part:10} {tt:7.2f} s  {100 * tt / total:5.1f} %")
        print(f"  top {args.top} functions by own time:")
        for tt, name in [f for f in funcs if not f[1].startswith("idle")][: args.top]:
            print(f"    {100 * tt / total:5.1f} %  {name}")
    if not args.keep:
        subprocess.run(["rm", "-rf", tmp], check=False)


if __name__ == "__main__":
    main()
