"""Hostile datagrams into a live cluster under writes (SPEC §12, issue 16).

A keyed 3-node cluster takes writes from a client while this process sends
its peer port, seeded and at random: junk, truncated and bit-flipped copies
of real peer datagrams, the real datagrams replayed to their own node and
to other nodes, unsealed frames of every message type, and frames sealed
with a wrong key. Real datagrams are captured off the loopback interface
with a packet socket (root only; the test says so and skips otherwise).
Afterwards every acknowledged write is in every node's store at its rev,
and the stores are identical.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from typing import Any

import pytest

from doozer.consensus import messages
from doozer.consensus.instance import NOOP
from doozer.consensus.seal import Seal
from procutil import NodeProcess, cluster_key_file, free_port

pytestmark = pytest.mark.slow

SECRET = b"s3cret"
AUTH = {"Authorization": "Bearer s3cret"}


def packet_socket() -> socket.socket:
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        s.bind(("lo", 0))
    except (OSError, AttributeError) as e:
        pytest.skip(f"cannot capture loopback packets here ({e}); the fuzz needs real datagrams")
    s.settimeout(0.2)
    return s


def capture(sock: socket.socket, ports: set[int], out: list, stop: threading.Event) -> None:
    """UDP payloads sent to ``ports`` on loopback, as (port, payload)."""
    while not stop.is_set() and len(out) < 5000:
        try:
            frame = sock.recv(70000)
        except socket.timeout:
            continue
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        if ip[9] != 17:  # UDP
            continue
        ihl = (ip[0] & 0x0F) * 4
        dport = struct.unpack(">H", ip[ihl + 2 : ihl + 4])[0]
        if dport in ports:
            out.append((dport, bytes(ip[ihl + 8 :])))


def random_message(rng: random.Random) -> Any:
    s = rng.randrange(1, 10**6)
    return rng.choice([
        messages.Accept(s, (rng.randrange(3), "EVIL"), NOOP),
        messages.Accepted(s, (0, "EVIL"), b"\x00" * 16),
        messages.Skip("EVIL", s, s + 1000),
        messages.Prepare((s, s + 1), (99, "EVIL")),
        messages.Learn(s, NOOP),
        messages.Want(1, s),
        messages.Ping(s, s),
        messages.Forward((b"\x98\x01\xa4EVIL\x01\xa9/ctl/name\xc4\x01x\xff\xce\x7f\xff\xff\xff\x90",)),
        messages.TooOld(s, s + 1),
        messages.Hello("127.0.0.1:1", "local"),
    ])


def test_hostile_datagrams_lose_no_acknowledged_write(tmp_path) -> None:
    """Thousands of seeded hostile datagrams into a live keyed cluster
    under writes: nothing acknowledged is lost, the stores stay identical,
    and the cluster still takes writes (seed printed for replay)."""
    sniffer = packet_socket()
    seed = random.randrange(1 << 30)
    print(f"peer fuzz seed {seed}")
    rng = random.Random(seed)
    key_path = cluster_key_file(tmp_path)
    (tmp_path / "rw").write_bytes(SECRET + b"\n")
    ports = [free_port() for _ in range(3)]
    addrs = [f"127.0.0.1:{p}" for p in ports]
    nodes = [
        NodeProcess(str(tmp_path / f"n{i}"), "--peers", ",".join(a for a in addrs if a != addrs[i]),
                    "--cluster-key-file", key_path, "--rw-secret-file", str(tmp_path / "rw"),
                    "--hist", "1000000", port=p)
        for i, p in enumerate(ports)
    ]
    captured: list = []
    stop = threading.Event()
    catcher = threading.Thread(target=capture, args=(sniffer, set(ports), captured, stop), daemon=True)
    catcher.start()
    acked: list[tuple[int, str, str]] = []
    writer_stop = threading.Event()

    def writer() -> None:
        n = 0
        while not writer_stop.is_set():
            n += 1
            node = nodes[n % 3]
            try:
                status, body = node.request("PUT", f"/v1/store/fz/k{n % 20}", b"v%d" % n,
                                            headers=AUTH, timeout=10)
            except OSError:
                continue
            if status == 200:
                acked.append((body["rev"], body["path"], "v%d" % n))

    try:
        for node in nodes:
            node.start(wait=False)
        for node in nodes:
            node.wait_up()
        deadline = time.monotonic() + 30
        while not all(n.votes() for n in nodes):
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.1)
        threads = [threading.Thread(target=writer, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # some real traffic to replay
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        wrong = Seal([b"a wrong key but long enough to pass"])
        sent = 0
        end = time.monotonic() + 8
        while time.monotonic() < end:
            port = rng.choice(ports)
            kind = rng.random()
            real = [d for _, d in captured[-500:]] or [b"\x02"]
            if kind < 0.15:
                data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
            elif kind < 0.3:
                base = rng.choice(real)
                data = base[: rng.randrange(len(base) + 1)]
            elif kind < 0.45:
                base = bytearray(rng.choice(real))
                if base:
                    base[rng.randrange(len(base))] ^= 1 << rng.randrange(8)
                data = bytes(base)
            elif kind < 0.7:
                data = rng.choice(real)  # a replay, to its node or to another
            elif kind < 0.85:
                data = b"\x01" + messages.pack("local", "x", "EVIL", rng.randrange(1 << 40), random_message(rng))
            else:
                body = messages.pack("local", "x", "EVIL", rng.randrange(1 << 40), random_message(rng))
                data = wrong.seal(body, sender="EVIL", incarnation=1, counter=rng.randrange(1 << 40),
                                  destination=None if rng.random() < 0.5 else "N")
            out.sendto(data, ("127.0.0.1", port))
            sent += 1
            if sent % 20 == 0:
                time.sleep(0.004)  # about 5,000 a second
        writer_stop.set()
        for t in threads:
            t.join(15)
        stop.set()
        print(f"sent {sent} hostile datagrams, {len(captured)} real ones captured, {len(acked)} writes acknowledged")
        assert sent > 1000 and len(acked) > 50 and len(captured) > 50
        # The cluster still takes writes, and every node reaches it.
        status, body = nodes[0].request("PUT", "/v1/store/fz/last", b"end", headers=AUTH, timeout=15)
        assert status == 200, body
        final = body["rev"]
        trees = []
        for node in nodes:
            deadline = time.monotonic() + 15
            while node.request("GET", "/v1/rev", headers=AUTH)[1]["rev"] < final:
                assert time.monotonic() < deadline, f"{node.addr} did not catch up"
                time.sleep(0.1)
            status, walk = node.request("GET", f"/v1/walk?glob=/fz/**&rev={final}", headers=AUTH)
            trees.append({f["path"]: (f["rev"], f["value"]) for f in walk["files"]})
            for rev, path, value in acked:
                status, got = node.request("GET", f"/v1/store{path}?rev={rev}", headers=AUTH)
                assert status == 200 and got["value"] == value and got["rev"] == rev, (seed, path, rev)
        assert trees[0] == trees[1] == trees[2], f"seed {seed}"
        counted = [json.loads(json.dumps(n.request("GET", "/_peer/consensus", headers=AUTH)[1]["transport"]["stats"]))
                   for n in nodes]
        dropped = sum(c["unauthenticated"] + c["malformed"] + c["bad_version"] + c["replayed"] for c in counted)
        assert dropped > sent // 2, counted
    finally:
        stop.set()
        writer_stop.set()
        for node in nodes:
            node.stop()
