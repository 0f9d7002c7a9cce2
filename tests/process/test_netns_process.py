"""A real multi-host cluster: three nodes, each in its own Linux network
namespace with its own address and host name, joined by a bridge (SPEC §5).

Each node is started with ``--peers`` naming the others by host name (from
the namespace's own ``/etc/hosts``: ``ip netns exec`` bind-mounts
``/etc/netns/<ns>/hosts`` over it) and with a cluster key. The test writes
through every node, cuts one namespace off (its link down), checks the
other two keep writing, brings it back and checks it catches up.

Everything the test uses it creates: the namespaces, a bridge, one veth
pair per namespace, addresses in a /24 of 10.213.0.0/16 that no route of
the machine uses yet (the bridge holds .254, so the test drives HTTP from
here), and the hosts files; all of it is removed in ``finally``, on failure
too. It needs root (CAP_NET_ADMIN) and ``ip``: without them it is skipped,
saying why.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from typing import Optional

import pytest

from procutil import TWISTD, NodeProcess, cluster_key_file, start_voting, wait_for

pytestmark = pytest.mark.slow

PORT = 8046  # every node on doozer's own port: each namespace has its own
NAMES = ("alpha", "beta", "gamma")
DOMAIN = "doozer.test"  # RFC 6761: never a real name


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


class Network:
    """Namespaces, a bridge and veth pairs of one test; :meth:`remove`
    deletes exactly what :meth:`build` made."""

    def __init__(self) -> None:
        tag = f"dz{os.getpid() % 10000}{random.randrange(100)}"  # interface names: <= 15 chars
        self.bridge = f"{tag}br"
        self.namespaces = [f"{tag}n{i}" for i in range(len(NAMES))]
        self.veths = [f"{tag}v{i}" for i in range(len(NAMES))]
        self.subnet = self._free_subnet()
        self.addrs = [f"{self.subnet}.{i + 1}" for i in range(len(NAMES))]
        self.hosts = [f"{name}.{DOMAIN}" for name in NAMES]
        self.made: list[tuple[str, str]] = []  # (kind, name), in order of creation

    @staticmethod
    def _free_subnet() -> str:
        used = ip("-4", "route", "show", "table", "all", check=False).stdout
        used += ip("-4", "addr", check=False).stdout
        for _ in range(100):
            subnet = f"10.213.{random.randrange(1, 254)}"
            if subnet + "." not in used:
                return subnet
        pytest.skip("no free /24 in 10.213.0.0/16 for the test's namespaces")

    def build(self) -> None:
        for name in [self.bridge, *self.veths]:
            if ip("link", "show", name, check=False).returncode == 0:
                pytest.skip(f"interface {name} exists already; not touching it")
        first = ip("netns", "add", self.namespaces[0], check=False)
        if first.returncode != 0:
            pytest.skip(f"cannot create network namespaces here (needs root / CAP_NET_ADMIN): "
                        f"{first.stderr.strip()}")
        self.made.append(("netns", self.namespaces[0]))
        ip("link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        hosts = "127.0.0.1 localhost\n" + "".join(
            f"{addr} {host}\n" for addr, host in zip(self.addrs, self.hosts)
        )
        for ns, veth, addr in zip(self.namespaces, self.veths, self.addrs):
            if ("netns", ns) not in self.made:
                ip("netns", "add", ns)
                self.made.append(("netns", ns))
            ip("link", "add", veth, "type", "veth", "peer", "name", veth + "p")
            self.made.append(("link", veth))  # deleting one end deletes both
            ip("link", "set", veth + "p", "netns", ns)
            ip("-n", ns, "link", "set", veth + "p", "name", "eth0")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("link", "set", veth, "master", self.bridge)
            ip("link", "set", veth, "up")
            directory = f"/etc/netns/{ns}"
            if not os.path.isdir("/etc/netns"):
                os.makedirs("/etc/netns")
                self.made.append(("dir", "/etc/netns"))
            os.makedirs(directory)
            self.made.append(("dir", directory))
            with open(f"{directory}/hosts", "w") as f:
                f.write(hosts)

    def link(self, i: int, state: str) -> None:
        """Cut namespace ``i`` off (``down``) or bring it back (``up``)."""
        ip("-n", self.namespaces[i], "link", "set", "eth0", state)

    def remove(self) -> None:
        for kind, name in reversed(self.made):
            if kind == "link":
                ip("link", "del", name, check=False)
            elif kind == "netns":
                ip("netns", "del", name, check=False)
            elif kind == "dir" and os.path.isdir(name):
                if name == "/etc/netns":
                    if not os.listdir(name):
                        os.rmdir(name)
                else:
                    shutil.rmtree(name)
        self.made.clear()


class NamespacedNode(NodeProcess):
    """A node run with ``ip netns exec``, listening on its host name."""

    def __init__(self, workdir: str, ns: str, host: str, addr: str, *args: str) -> None:
        self.ns, self.ip = ns, addr
        super().__init__(workdir, *args, port=PORT)
        self.host = host

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"  # from here, through the bridge

    def start(self, wait: bool = True) -> "NamespacedNode":
        self.log = open(os.path.join(self.workdir, "node.log"), "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *TWISTD, "-n", "--pidfile=", "doozer",
             "--listen", self.addr, "--web", "false", *self.args],
            cwd=self.workdir, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_up()
        return self

    def stop(self) -> None:
        # ``ip netns exec`` execs twistd: the pid is the node's own.
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        super().stop()


def put(node: NodeProcess, path: str, value: bytes, timeout: float = 15) -> int:
    return node.request("PUT", f"/v1/store{path}", value, timeout=timeout)[0]


def value(node: NodeProcess, path: str) -> Optional[str]:
    status, body = node.request("GET", f"/v1/store{path}", timeout=2)
    return body["value"] if status == 200 else None


def rev(node: NodeProcess) -> int:
    return node.request("GET", "/v1/rev", timeout=2)[1]["rev"]


@pytest.fixture
def network():
    if shutil.which("ip") is None:
        pytest.skip("no 'ip' command (iproute2) to make network namespaces with")
    net = Network()
    try:
        net.build()
        yield net
    finally:
        net.remove()


def test_three_hosts_by_name_survive_one_cut_off_and_catch_it_up(network, tmp_path) -> None:
    key = cluster_key_file(tmp_path)
    nodes: list[NamespacedNode] = []
    try:
        for i, (ns, host, addr) in enumerate(zip(network.namespaces, network.hosts, network.addrs)):
            peers = ",".join(f"{h}:{PORT}" for h in network.hosts if h != host)
            nodes.append(NamespacedNode(
                str(tmp_path / NAMES[i]), ns, host, addr,
                "--peers", peers, "--cluster-key-file", key, "--timeout", "60",
            ))
        start_voting(nodes, 60)
        # Every node knows the others by their names (SPEC §5: advertised as given).
        status, cluster = nodes[0].request("GET", "/v1/cluster", timeout=5)
        assert sorted(n["addr"] for n in cluster["nodes"]) == sorted(f"{h}:{PORT}" for h in network.hosts)

        for i, node in enumerate(nodes):
            assert put(node, f"/through/{NAMES[i]}", NAMES[i].encode()) == 200
        for node in nodes:
            for name in NAMES:
                wait_for(f"/through/{name} on {node.addr}",
                         lambda: value(node, f"/through/{name}") == name)

        network.link(2, "down")  # gamma is cut off
        for n in range(5):
            for node in nodes[:2]:
                assert put(node, f"/cut/{node.host.split('.')[0]}/{n}", b"x", timeout=20) == 200
        assert value(nodes[0], "/cut/beta/4") == "x"
        # Cut off longer than names.STALE: the others look gamma's name up
        # again (it still resolves where it did) and keep sending there.
        time.sleep(5)

        network.link(2, "up")
        assert put(nodes[0], "/after", b"back", timeout=20) == 200
        target = rev(nodes[0])
        wait_for("gamma to catch up", lambda: rev(nodes[2]) >= target, 60)
        for n in range(5):
            assert value(nodes[2], f"/cut/alpha/{n}") == "x"
            assert value(nodes[2], f"/cut/beta/{n}") == "x"
        assert value(nodes[2], "/after") == "back"
        # and it writes again itself
        wait_for("a write through gamma", lambda: put(nodes[2], "/gamma/again", b"1", timeout=10) == 200, 60)
        wait_for("gamma's write on alpha", lambda: value(nodes[0], "/gamma/again") == "1")
        for node in nodes:
            assert "Traceback" not in node.read_log(), node.read_log()[-3000:]
    finally:
        for node in nodes:
            node.stop()
