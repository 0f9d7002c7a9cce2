"""Restart time and memory of a durable node holding many files.

    python bench/restart.py [--files 100000] [--value 100] [--clients 50]
        [--restarts 3] [--disk DIR] [--snapshot-every N] [--profile FILE]

Starts one ``twistd -n doozer --data-dir DIR/data`` node (a one-member
cluster, fsyncing: SPEC §8), writes ``--files`` distinct files through the
HTTP API (``PUT /v1/store/f/<n>``, a ``--value``-byte body, ``--clients``
keep-alive connections from one asyncio process), notes the highest rev
acknowledged, then kills the node with SIGKILL and starts it again with
the same arguments, ``--restarts`` times. Each restart is timed from just
before the process is started until it answers ``GET
/v1/store/<file of that rev>?rev=<that rev>`` with that file: the node has
read its data dir, decided again what its log holds and serves the
latest acknowledged write. Also printed: when the HTTP port first answered,
the process's RSS once it answered and 3 s later, and what is in the data
dir. ``--snapshot-every N`` is passed to the node (instances between two
snapshots in its data dir; the default 10,000 means that 100,000 files
written 50 at a time may all still be in the log, not in a snapshot).

With ``--profile FILE``, after the last restart the node is killed again
and its start-up is run once more in this process under cProfile: the
data dir read (``DataDir.open``: identity, log, newest snapshot) and the
node made from it (``Node.resume``: the store loaded from the snapshot,
the decided log applied), without the network; the times of both and the
top of the profile are printed, the stats saved to FILE.

Figures are printed, never pass/fail. Target (issue 18): ≤ 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import procs  # noqa: E402


async def fill(port: int, files: int, value: bytes, clients: int) -> tuple[int, str]:
    """Write ``files`` files over ``clients`` connections; the highest rev
    acknowledged and the path written at it."""
    best = [0, ""]
    host = f"127.0.0.1:{port}"

    async def client(first: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in range(first, files, clients):
            path = f"/f/{n}"
            writer.write((f"PUT /v1/store{path} HTTP/1.1\r\nHost: {host}\r\n"
                          f"Content-Length: {len(value)}\r\n\r\n").encode() + value)
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().index(b"content-length:")
            length = int(head[at + 15:head.index(b"\r\n", at)])
            body = json.loads(await reader.readexactly(length))
            if int(head[9:12]) != 200:
                raise RuntimeError(f"PUT {path}: {head[:12]!r} {body}")
            if body["rev"] > best[0]:
                best[:] = [body["rev"], path]
        writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return best[0], best[1]


def start(port: int, workdir: str, log: str, extra: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=procs.ROOT)
    return subprocess.Popen(
        [*procs.TWISTD, "-n", "--pidfile=", "doozer", "--listen", f"127.0.0.1:{port}",
         "--web", "false", "--data-dir", "data", *extra],
        cwd=workdir, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
    )


def profile_startup(directory: str, out: str, extra: list[str]) -> None:
    """Read the data dir and make the node from it, in this process, under
    cProfile (what a restarted node does before it serves)."""
    import cProfile
    import gc
    import pstats

    sys.path.insert(0, procs.ROOT)
    from twisted.internet.task import Clock

    from doozer.node import build_node
    from doozer.node.datadir import DataDir
    from doozer.server.config import Config
    from doozer.storage.writer import SynchronousRunner

    # As the service does before it makes the node (NodeService.startService).
    gc.freeze()
    gc.set_threshold(20000, 20, 100)
    times: dict[str, float] = {}
    clock = Clock()

    def startup() -> None:
        t = time.perf_counter()
        data = DataDir(directory, "local")
        data.open()
        times["DataDir.open"] = time.perf_counter() - t
        data.start(clock, SynchronousRunner())
        assert data.identity is not None
        every = int(extra[extra.index("--snapshot-every") + 1]) if extra else 10_000
        node = build_node(Config(snapshot_every=every), clock, data.identity.node_id, data=data)
        t = time.perf_counter()
        node.resume()
        times["Node.resume"] = time.perf_counter() - t

    profiler = cProfile.Profile()
    profiler.runcall(startup)
    profiler.dump_stats(out)
    print("start-up in this process, under cProfile: " + ", ".join(
        f"{name} {seconds:.2f} s" for name, seconds in times.items()))
    pstats.Stats(out).sort_stats("cumulative").print_stats(25)


def wait_ready(port: int, path: str, rev: int, proc: subprocess.Popen, t0: float,
               deadline: float = 600.0) -> tuple[float, float]:
    """Seconds from ``t0`` until ``/v1/rev`` answered (the node listens),
    and until the read of ``path`` at ``rev`` answered with that rev."""

    def check() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"the node exited with status {proc.returncode}")
        if time.monotonic() - t0 > deadline:
            raise RuntimeError("the node did not answer in time")

    while True:
        check()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/rev", timeout=5).read()
            break
        except OSError:  # refused (not listening yet), or an HTTP error
            time.sleep(0.01)
    answered = time.monotonic() - t0
    while True:
        check()
        try:
            url = f"http://127.0.0.1:{port}/v1/store{path}?rev={rev}&timeout=1"
            body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        except urllib.error.HTTPError as e:
            if e.code not in (503, 504):  # not serving yet, or the rev not applied yet
                raise RuntimeError(f"read {path} at rev {rev}: {e.code} {e.read()!r}") from None
            time.sleep(0.01)
            continue
        if body.get("rev") != rev:
            raise RuntimeError(f"read {path} at rev {rev}: {body}")
        return answered, time.monotonic() - t0


def dir_summary(directory: str) -> str:
    names = sorted(os.listdir(directory))
    sizes = {n: os.path.getsize(os.path.join(directory, n)) for n in names}
    snaps = [n for n in names if n.startswith("snapshot-")]
    logs = [n for n in names if n.startswith("log-")]
    return (f"{sum(sizes.values()) / 2**20:.1f} MiB: {len(snaps)} snapshot(s) "
            f"({', '.join(f'{sizes[n] / 2**20:.1f} MiB' for n in snaps)}), {len(logs)} log "
            f"segment(s) ({', '.join(f'{sizes[n] / 2**20:.1f} MiB' for n in logs)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--value", type=int, default=100, help="bytes per file")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--disk", metavar="DIR", default=None,
                        help="where the data dir goes (default: the temp dir); a real disk")
    parser.add_argument("--snapshot-every", type=int, metavar="N",
                        help="the node's --snapshot-every (default: the node's own)")
    parser.add_argument("--profile", metavar="FILE",
                        help="then profile the start-up in this process, stats saved to FILE")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="doozer-restart-", dir=args.disk)
    log = os.path.join(workdir, "node.log")
    port = procs.free_port()
    proc: Optional[subprocess.Popen] = None
    extra = ["--snapshot-every", str(args.snapshot_every)] if args.snapshot_every else []
    try:
        proc = start(port, workdir, log, extra)
        procs.wait_http(f"http://127.0.0.1:{port}/v1/rev", 30)
        t = time.monotonic()
        rev, path = asyncio.run(fill(port, args.files, b"v" * args.value, args.clients))
        took = time.monotonic() - t
        print(f"filled: {args.files} files of {args.value} bytes in {took:.1f} s "
              f"({args.files / took:.0f} writes/s, {args.clients} clients); latest rev {rev} ({path})")
        print(f"RSS before kill -9: {procs.rss_kib(proc.pid) / 1024:.0f} MiB; data dir "
              f"{dir_summary(os.path.join(workdir, 'data'))}")
        for i in range(args.restarts):
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            t0 = time.monotonic()
            proc = start(port, workdir, log, extra)
            answered, ready = wait_ready(port, path, rev, proc, t0)
            rss = procs.rss_kib(proc.pid)
            time.sleep(3)
            print(f"restart {i + 1}: port answered after {answered:.2f} s, read of rev {rev} "
                  f"after {ready:.2f} s; RSS {rss / 1024:.0f} MiB then, "
                  f"{procs.rss_kib(proc.pid) / 1024:.0f} MiB 3 s later")
        print(f"data dir after the restarts: {dir_summary(os.path.join(workdir, 'data'))}")
        lines = [line for line in open(log, errors="replace") if "restarts in cluster" in line]
        if lines:
            print("last restart logged: " + lines[-1].split("] ", 1)[-1].strip())
        if args.profile:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            profile_startup(os.path.join(workdir, "data"), os.path.abspath(args.profile), extra)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
