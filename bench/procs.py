"""Start and stop the servers a benchmark measures (real processes, loopback only)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, NamedTuple, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests' process helpers (free ports, twistd's entry point) serve here too.
sys.path.insert(0, os.path.join(ROOT, "tests"))
from procutil import TWISTD, free_port  # noqa: E402


def wait_http(url: str, seconds: float = 20.0) -> None:
    """Poll ``url`` until it answers (the process has started)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            time.sleep(0.1)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@contextmanager
def _serving(proc: subprocess.Popen, url: str) -> Iterator[None]:
    """Once ``proc`` answers ``url``: the block; then ``proc`` is stopped."""
    try:
        wait_http(url)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def doozer_node(*args: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """A one-member node in its own process; yields (port, process)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "doozer",
             "--listen", f"127.0.0.1:{port}", "--web", "false", *args],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        with _serving(proc, f"http://127.0.0.1:{port}/v1/rev"):
            yield port, proc


@contextmanager
def bare_klein() -> Iterator[tuple[int, subprocess.Popen]]:
    """The reference: a bare Klein JSON handler, no access log."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bench", "bare_klein.py"), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    with _serving(proc, f"http://127.0.0.1:{port}/v1/store/message"):
        yield port, proc


def put(port: int, path: str, body: bytes) -> dict:
    """One write through the HTTP API."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/store{path}", data=body, method="PUT"
    )
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def rev(port: int) -> int:
    """The node's current rev."""
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/rev", timeout=10).read())["rev"]


# ----------------------------------------------------------------------
# 3-node clusters, doozer's and etcd's (bench/cluster_write.py, bench/lease_keepalive.py)


class Cluster(NamedTuple):
    """A running cluster: its client HOST:PORTs, its processes' pids, and
    (doozer) the cluster key its ``/_peer/consensus`` wants."""

    addrs: list[str]
    pids: list[int]
    key: Optional[bytes] = None


def _get_json(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url, timeout=2).read())


def _formed(ps: list[subprocess.Popen], ready: Callable[[], bool], seconds: float = 60) -> bool:
    """Poll ``ready`` (an unanswered or garbled poll is a no) until it says
    yes: False once ``seconds`` passed or a process of ``ps`` exited."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():
                return True
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in ps):
            return False
        time.sleep(0.2)


def _kill(ps: list[subprocess.Popen], grace: float = 10) -> None:
    for p in ps:
        if p.poll() is None:
            p.terminate()
    for p in ps:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


@contextmanager
def doozer_cluster(extra: list[str], disk: Optional[str] = None, profile: Optional[str] = None,
                   logs: Optional[list[str]] = None) -> Iterator[Cluster]:
    """Three ``twistd doozer`` processes forming one cluster; yields their
    HOST:PORTs and pids. With ``disk``, each node keeps a ``--data-dir``
    in a fresh directory under it (fsyncing: SPEC §8). With ``profile``,
    each node runs under twistd's cProfile and saves its stats to
    ``profile + "-n<i>.prof"`` when it stops (the reactor thread only).
    ``logs`` gets the nodes' logs once they stopped."""
    ports = [free_port() for _ in range(3)]
    addrs = [f"127.0.0.1:{p}" for p in ports]
    env = dict(os.environ, PYTHONPATH=ROOT)
    ps: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        key: Optional[bytes] = None
        if "--insecure-peers" not in extra and "--cluster-key-file" not in extra:
            key = os.urandom(24).hex().encode()
            path = os.path.join(tmp, "cluster.key")
            with open(path, "wb") as f:
                f.write(key + b"\n")
            extra = [*extra, "--cluster-key-file", path]  # as a cluster must run (SPEC §5)
        try:
            data = tempfile.mkdtemp(dir=disk) if disk else None
            for i, addr in enumerate(addrs):
                log = open(os.path.join(tmp, f"n{i}.log"), "wb")
                durable = ["--data-dir", os.path.join(data, f"n{i}")] if data else []
                prof = [f"--profile={profile}-n{i}.prof", "--savestats"] if profile else []
                ps.append(subprocess.Popen(
                    [*TWISTD, "-n", "--pidfile=", *prof, "doozer", "--listen", addr,
                     "--web", "false", "--peers", ",".join(addrs), *extra, *durable],
                    cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
                ))
            if not _formed(ps, lambda: all(
                    len(_get_json(f"http://{a}/v1/cluster")["members"]) == 3 for a in addrs)):
                tails = "".join(open(os.path.join(tmp, f"n{i}.log")).read()[-1500:]
                                for i in range(3))
                raise RuntimeError(f"the three doozer nodes did not form one cluster:\n{tails}")
            yield Cluster(addrs, [p.pid for p in ps], key)
        finally:
            # A profiled node writes its stats as it stops: slow on a loaded machine.
            _kill(ps, 90 if profile else 10)
            if logs is not None:
                for i in range(len(ps)):
                    with open(os.path.join(tmp, f"n{i}.log"), errors="replace") as f:
                        logs.append(f.read())
            if data:
                shutil.rmtree(data, ignore_errors=True)


@contextmanager
def etcd_cluster(disk: Optional[str] = None, members: int = 3,
                 v2: bool = False) -> Iterator[Cluster]:
    """Three etcd members (or ``members``) on loopback, data on tmpfs (or
    under ``disk``), its v2 API on when ``v2``; yields their client
    HOST:PORTs and pids."""
    client = [free_port() for _ in range(members)]
    peer = [free_port() for _ in range(members)]
    initial = ",".join(f"e{i}=http://127.0.0.1:{peer[i]}" for i in range(members))
    base = disk or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    ps: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        try:
            for i in range(members):
                ps.append(subprocess.Popen(
                    ["etcd", *(["--enable-v2=true"] if v2 else []), "--name", f"e{i}", "--data-dir", os.path.join(tmp, f"e{i}"),
                     "--listen-client-urls", f"http://127.0.0.1:{client[i]}",
                     "--advertise-client-urls", f"http://127.0.0.1:{client[i]}",
                     "--listen-peer-urls", f"http://127.0.0.1:{peer[i]}",
                     "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[i]}",
                     "--initial-cluster", initial, "--initial-cluster-token", "bench",
                     "--initial-cluster-state", "new", "--logger", "zap",
                     "--log-level", "error"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))
            addrs = [f"127.0.0.1:{p}" for p in client]
            if not _formed(ps, lambda: all(
                    _get_json(f"http://{a}/health").get("health") == "true" for a in addrs)):
                raise RuntimeError(f"the {members} etcd members did not form one cluster")
            yield Cluster(addrs, [p.pid for p in ps])
        finally:
            _kill(ps)


def start_etcd(stack: ExitStack, disk: Optional[str] = None) -> Optional[Cluster]:
    """An etcd cluster that ``stack`` stops, or None when etcd is not
    installed or formed no cluster twice in a row (a member that lost its
    free port to another process before it bound it: once more)."""
    if not shutil.which("etcd"):
        return None
    for attempt in (1, 2):
        try:
            return stack.enter_context(etcd_cluster(disk))
        except RuntimeError as e:
            print(f"note: etcd, attempt {attempt}: {e}")
    return None


def etcd_version() -> str:
    """``etcd --version``'s first line."""
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0]


# ----------------------------------------------------------------------
# the command-line options of the cluster benchmarks


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose which clusters a cluster benchmark starts."""
    parser.add_argument("--no-etcd", action="store_true", help="measure doozer only")
    parser.add_argument("--doozer-args", default="", help="extra twistd doozer options")
    parser.add_argument("--disk", metavar="DIR",
                        help="also measure doozer with --data-dir under DIR (fsyncing), and put "
                             "etcd's data under DIR instead of tmpfs: both on the same disk")
    parser.add_argument("--no-memory", action="store_true",
                        help="with --disk: skip the memory-only doozer cluster")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="run the doozer nodes under cProfile; stats saved to "
                             "PREFIX-<memory|disk>-n<i>.prof (read them with python -m pstats)")


def doozer_runs(args: argparse.Namespace) -> list[tuple[str, Optional[str], Optional[str]]]:
    """The doozer clusters ``add_cluster_options``' options ask for: (name,
    the ``disk`` and the ``profile`` prefix to give ``doozer_cluster``)."""
    runs: list[tuple[str, Optional[str]]] = [] if args.disk and args.no_memory else [("doozer", None)]
    if args.disk:
        runs.append(("doozer --data-dir", args.disk))
    return [(name, disk, (f"{os.path.abspath(args.profile)}-{'disk' if disk else 'memory'}"
                          if args.profile else None))
            for name, disk in runs]


def etcd_name(args: argparse.Namespace) -> str:
    """The etcd cluster's column name."""
    return "etcd (disk)" if args.disk else "etcd"
