"""Real ``twistd doozer`` processes for tests: free loopback ports, always killed."""

from __future__ import annotations

import atexit
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Optional, Sequence

from doozer.node.names import resolve_host

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: twistd of the running interpreter (``python -m twisted`` is twist, not twistd).
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def cluster_key_file(directory: Any) -> str:
    """A new cluster key file in ``directory`` (what every node of one
    test cluster is given: nodes with --peers need one, SPEC §5)."""
    import base64

    path = os.path.join(str(directory), "cluster.key")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(base64.b64encode(os.urandom(32)) + b"\n")
    return path


#: not the global generator, which tests (hypothesis) may seed
_pick = random.SystemRandom()

#: Every node process started here. A test that fails before it stops its
#: own node would otherwise leave it running after pytest is gone (two
#: such were found holding ports an hour later): the rest die at exit.
_started: list[subprocess.Popen] = []


@atexit.register
def kill_leftovers() -> None:
    """SIGKILL every node process started here that still runs."""
    for proc in _started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    _started.clear()


def _port_range() -> range:
    """The ports this test process hands out: below the kernel's ephemeral
    range (so no outgoing connection takes one between its pick and its
    bind), a separate share for each pytest-xdist worker (two workers
    picking at once never pick the same port)."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    low = max(low, 12000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    share = (low - 10000) // count
    start = 10000 + (index % count) * share
    return range(start, start + share)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` (127.0.0.1, or ::1),
    never the same one twice in this process (a port just closed is free
    again: two picks for one cluster once named the same port, and a node
    failed to start with 'Address already in use')."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Kept on the sys module: this file is imported both as ``procutil``
    # and as ``tests.procutil`` (the fault runner), two module objects.
    given: set[int] = sys.__dict__.setdefault("_doozer_test_ports_given", set())
    ports = _port_range()
    for _ in range(len(ports)):
        port = _pick.choice(ports)
        if port in given:
            continue
        try:
            with socket.socket(family) as t, socket.socket(family, socket.SOCK_DGRAM) as u:
                t.bind((host, port))
                u.bind((host, port))
        except OSError:
            continue
        given.add(port)
        return port
    raise RuntimeError(f"no free port left in {ports}")


class NodeProcess:
    """One ``twistd -n doozer`` in its own directory.

    :param workdir: where it runs (its log goes to ``node.log`` there).
    :param args: extra ``twistd doozer`` options.
    :param env: extra environment variables.
    :param host: its --listen host: 127.0.0.1, ``::1`` or a name that
        resolves to either (a free port is picked on what it resolves to).
    """

    def __init__(self, workdir: str, *args: str, port: Optional[int] = None,
                 env: Optional[dict] = None, web: bool = False, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(resolve_host(host))
        self.web_port = free_port() if web else None
        self.workdir = workdir
        self.args = list(args)
        self.env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
        self.proc: Optional[subprocess.Popen] = None
        os.makedirs(workdir, exist_ok=True)

    @property
    def addr(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def start(self, wait: bool = True) -> "NodeProcess":
        web = ["--web", f"127.0.0.1:{self.web_port}"] if self.web_port else ["--web", "false"]
        self.log = open(os.path.join(self.workdir, "node.log"), "ab")
        self.proc = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "doozer",
             "--listen", self.addr, *web, *self.args],
            cwd=self.workdir, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        _started[:] = [p for p in _started if p.poll() is None]
        _started.append(self.proc)
        if wait:
            self.wait_up()
        return self

    def wait_up(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node exited: {self.read_log()[-2000:]}")
            try:
                self.request("GET", "/v1/rev", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"node did not come up: {self.read_log()[-2000:]}")

    def votes(self) -> bool:
        """Whether ``/v1/self`` says the node votes (``voting``).

        A member is in the CAL (``member``) a round trip before it votes: a
        slot claimed at seqn s counts from s + alpha on, which the members
        skip to at once. Until then a three-node cluster is decided by two,
        and stops if one of them dies.
        """
        try:
            status, body = self.request("GET", "/v1/self", timeout=2)
        except (OSError, ValueError, http.client.HTTPException):
            status, body = 0, None
        if status == 200 and isinstance(body, dict):
            return body.get("voting") is True
        # TLS or a secret in the way: the log says it too.
        return " votes in cluster " in self.read_log()

    def read_log(self) -> str:
        with open(os.path.join(self.workdir, "node.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[dict] = None, timeout: float = 10) -> tuple[int, Any]:
        """One HTTP request; returns (status, decoded JSON or raw bytes)."""
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, raw, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
        return status, json.loads(raw) if ctype.startswith("application/json") else raw

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()
            self.log = None


def wait_for(what: str, check: Callable[[], Any], seconds: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true, and return that; an
    ``OSError`` (a node still starting, or just killed) counts as a no.
    Fails saying ``what`` and the last answer."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def start_voting(nodes: "Sequence[NodeProcess]", seconds: float = 30.0) -> None:
    """Start every node of a cluster, then wait until each is up and votes.
    All are started before any is waited for: a node of a fresh cluster
    answers only once its peers do."""
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_up()
        wait_for(f"{node.addr} to vote", node.votes, seconds)


def self_signed_cert(directory: Any) -> tuple[str, str]:
    """A throw-away certificate and key for 127.0.0.1 (paths of the PEM files)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return cert, key


def closed_by_node(sock: socket.socket, within: float = 10.0) -> bool:
    """Whether the node closes ``sock`` (reading and dropping what it sends) within ``within`` s."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
