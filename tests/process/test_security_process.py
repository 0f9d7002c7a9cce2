"""The peer port against an attacker, on real nodes (SPEC §12, issue 16).

Each test reproduces an attack that worked against the first builds (in
brackets in the SPEC) with hand-made datagrams and requests from this
process, and shows it now changes nothing and is counted.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from typing import Any

import pytest

from doozer.consensus import messages
from doozer.consensus.value import NOOP
from doozer.consensus.seal import Seal
from doozer.store.mutation import Mutation, SET
from doozer.server.auth import make_token
from procutil import NodeProcess, cluster_key_file, free_port

pytestmark = pytest.mark.slow

SECRET = b"s3cret"
AUTH = {"Authorization": "Bearer s3cret"}


def wait_for(what: str, check: Any, seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


def frame(sender: str, message: Any, cluster_id: str = messages.NO_CLUSTER, counter: int = 1,
          seal: Seal | None = None, to: str | None = None) -> bytes:
    body = messages.pack("local", cluster_id, sender, counter, message)
    if seal is None:
        return b"\x01" + body
    return seal.seal(body, sender=sender, incarnation=7, counter=counter, destination=to)


def consensus(node: NodeProcess) -> dict:
    status, state = node.request("GET", "/_peer/consensus", headers=AUTH, timeout=5)
    assert status == 200, state
    return state


def secret_node(tmp_path: Any, *args: str) -> NodeProcess:
    (tmp_path / "rw").write_bytes(SECRET + b"\n")
    node = NodeProcess(str(tmp_path / "n"), "--rw-secret-file", str(tmp_path / "rw"), *args)
    node.start()
    wait_for("the node to vote", node.votes)
    return node


def ask_status(node: NodeProcess, sock: socket.socket, hello_addr: str, seal: Seal | None = None) -> Any:
    sock.sendto(frame("ATTACKER", messages.Hello(hello_addr, "local"), seal=seal), ("127.0.0.1", node.port))
    data, _ = sock.recvfrom(65536)
    if seal is not None:
        opened = seal.open(data, "")
        assert opened is not None and opened.to_address
        return messages.unpack(opened.body).message
    return messages.unpack(data[1:]).message


def test_a_forged_forward_and_learns_change_nothing_on_a_node_without_a_key(tmp_path) -> None:
    """[One Hello (its Status gives away the cluster id) and one FORWARD of
    hand-built mutations from a made-up sender wrote /ctl/name=hijacked and
    emptied a CAL slot past the rw and ro secrets; forged LEARNs 200
    instances ahead became decided.] Without a key only CAL members are
    heard: all of it is dropped and counted."""
    node = secret_node(tmp_path)
    sock = udp()
    status = ask_status(node, sock, f"127.0.0.1:{sock.getsockname()[1]}")
    cid = status.cluster_id
    before = consensus(node)
    items = tuple(
        Mutation(SET, "EVIL", i, path, value, -1, until=10**9).encode()
        for i, (path, value) in enumerate([("/ctl/name", b"hijacked"), ("/ctl/cal/0", b"")], 1)
    )
    target = ("127.0.0.1", node.port)
    sock.sendto(frame("EVIL", messages.Forward(items), cid, counter=2), target)
    for i in range(1, 201, 20):
        sock.sendto(frame("EVIL", messages.Learn(before["decided"] + i, NOOP), cid, counter=2 + i), target)
    sock.sendto(frame("EVIL", messages.Accept(before["decided"] + 1, (9, "EVIL"), NOOP), cid, counter=300), target)
    wait_for("the datagrams to be dropped",
             lambda: consensus(node)["node_counters"].get("non_member_dropped", 0) >= 12, 10)
    assert node.request("GET", "/v1/store/ctl/name", headers=AUTH)[1]["value"] == "local"
    status, cluster = node.request("GET", "/v1/cluster", headers=AUTH)
    assert [m["slot"] for m in cluster["members"]] == [0]
    assert consensus(node)["decided"] < before["decided"] + 10
    node.stop()


def keyed_cluster(tmp_path: Any, n: int = 3) -> tuple[list[NodeProcess], bytes]:
    key_path = cluster_key_file(tmp_path)
    (tmp_path / "rw").write_bytes(SECRET + b"\n")
    ports = [free_port() for _ in range(n)]
    addrs = [f"127.0.0.1:{p}" for p in ports]
    nodes = [
        NodeProcess(str(tmp_path / f"n{i}"), "--peers", ",".join(a for a in addrs if a != addrs[i]),
                    "--cluster-key-file", key_path, "--rw-secret-file", str(tmp_path / "rw"),
                    "--timeout", "3", port=p)
        for i, p in enumerate(ports)
    ]
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_up()
        wait_for(f"{node.addr} to vote", node.votes, 30)
    with open(key_path, "rb") as f:
        key = f.read().strip()
    return nodes, key


def node_id(node: NodeProcess) -> str:
    return node.request("GET", "/v1/self", headers=AUTH)[1]["id"]


def test_with_a_key_outsiders_forged_datagrams_and_replays_change_nothing(tmp_path) -> None:
    """With a cluster key: datagrams unsealed, sealed with a wrong key, or
    sealed for one node and replayed to another node or to a restarted one
    [cross-node replays were accepted] are refused and counted; the stores
    stay identical and writes go on."""
    nodes, key = keyed_cluster(tmp_path)
    a, b, c = nodes
    assert a.request("PUT", "/v1/store/k", b"v1", headers=AUTH)[0] == 200
    cid = consensus(a)["transport"]["cluster_id"]
    sock = udp()
    seqn = consensus(a)["decided"] + 1
    forward = messages.Forward((Mutation(SET, "EVIL", 1, "/ctl/name", b"x", -1, until=10**9).encode(),))
    forged = [
        frame("EVIL", forward, cid),  # no key
        frame("EVIL", forward, cid, seal=Seal([b"a wrong key, long enough too!!"]), to=node_id(a)),
        frame("EVIL", messages.Learn(seqn + 100, NOOP), cid, seal=Seal([b"another wrong key, long enough"]), to=node_id(a)),
    ]
    before = consensus(a)["transport"]["stats"]["unauthenticated"]
    for data in forged:
        sock.sendto(data, ("127.0.0.1", a.port))
    # A datagram a key holder sealed for b, replayed to c; and to a
    # restarted c (a new process, a new id) at the same address.
    for_b = frame("PEER", messages.Ping(0, 0), cid, counter=5, seal=Seal([key]), to=node_id(b))
    c_before = consensus(c)["transport"]["stats"]["unauthenticated"]
    sock.sendto(for_b, ("127.0.0.1", c.port))
    wait_for("a to count three", lambda: consensus(a)["transport"]["stats"]["unauthenticated"] >= before + 3, 10)
    wait_for("c to count the replay", lambda: consensus(c)["transport"]["stats"]["unauthenticated"] >= c_before + 1, 10)
    for_c = frame("PEER", messages.Ping(0, 0), cid, counter=6, seal=Seal([key]), to=node_id(c))
    c.stop()
    again = NodeProcess(c.workdir + "-again", *c.args, port=c.port)
    again.start()
    wait_for("the restarted node to join", again.votes, 30)
    r_before = consensus(again)["transport"]["stats"]["unauthenticated"]
    sock.sendto(for_c, ("127.0.0.1", again.port))
    wait_for("the restarted node to refuse it",
             lambda: consensus(again)["transport"]["stats"]["unauthenticated"] >= r_before + 1, 10)
    assert a.request("PUT", "/v1/store/k", b"v2", headers=AUTH)[0] == 200
    for node in (a, b, again):
        wait_for("the write everywhere",
                 lambda: node.request("GET", "/v1/store/k", headers=AUTH)[1].get("value") == "v2", 10)
        assert node.request("GET", "/v1/store/ctl/name", headers=AUTH)[1]["value"] == "local"
    for node in (a, b, again):
        node.stop()


def test_status_goes_to_the_hellos_source_only(tmp_path) -> None:
    """[Hello reflected: the Status went to whatever address was written
    inside the Hello.] The answer goes to the datagram's source."""
    node = secret_node(tmp_path)
    asker, victim = udp(), udp()
    status = ask_status(node, asker, f"127.0.0.1:{victim.getsockname()[1]}")
    assert status.cluster_name == "local"
    victim.settimeout(0.5)  # the Status above was sent already: a reflection would be here
    with pytest.raises(socket.timeout):
        victim.recvfrom(65536)
    node.stop()


def test_a_peer_token_is_taken_once(tmp_path) -> None:
    """[The peer token was a bearer token good for ±300 s.] A token made
    with the key for GET /_peer/snapshot is taken once; a replay is 401."""
    key_path = cluster_key_file(tmp_path)
    with open(key_path, "rb") as f:
        key = f.read().strip()
    node = NodeProcess(str(tmp_path / "n"), "--cluster-key-file", key_path)
    node.start()
    token = make_token(key, b"GET", b"/_peer/snapshot", time.time())
    headers = {"X-Doozer-Peer": token}
    assert node.request("GET", "/_peer/snapshot", headers=headers)[0] == 200
    assert node.request("GET", "/_peer/snapshot", headers=headers)[0] == 401
    assert node.request("GET", "/_peer/snapshot")[0] == 401
    node.stop()


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append((self.path, dict(self.headers)))
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_node_never_sends_its_secret_to_a_peer(tmp_path) -> None:
    """[A new node without a key sent its read-write secret, in clear, to a
    forged peer.] A fake peer answers the node's Hello as a live cluster;
    the node then asks it for a snapshot, and that request carries no
    secret (with no key it carries no credential at all)."""
    port = free_port()
    fake_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fake_udp.bind(("127.0.0.1", port))
    fake_udp.settimeout(10)
    _Recorder.seen = []
    server = http.server.HTTPServer(("127.0.0.1", port), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "rw").write_bytes(SECRET + b"\n")
    node = NodeProcess(str(tmp_path / "n"), "--peers", f"127.0.0.1:{port}", "--insecure-peers",
                       "--rw-secret-file", str(tmp_path / "rw"))
    node.start(wait=False)
    try:
        data, source = fake_udp.recvfrom(65536)
        assert isinstance(messages.unpack(data[1:]).message, messages.Hello)
        status = messages.Status(f"127.0.0.1:{port}", "local", "FAKECLUSTER", True, 9)
        fake_udp.sendto(frame("FAKE", status, counter=1), source)
        wait_for("the node to ask the fake peer for a snapshot", lambda: _Recorder.seen, 15)
        path, headers = _Recorder.seen[0]
        assert path == "/_peer/snapshot"
        assert not any(k.lower() == "authorization" for k in headers)
        assert SECRET.decode() not in repr(headers)
    finally:
        node.stop()
        server.shutdown()
        fake_udp.close()
