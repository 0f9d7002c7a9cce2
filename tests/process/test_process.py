"""A real one-member node: sockets, TLS, secrets, bodies, disconnects, fuzz."""

from __future__ import annotations

import json
import random
import socket
import ssl
import time

import pytest

from leasefuzz import LeaseFuzz
from procutil import NodeProcess, closed_by_node, self_signed_cert

pytestmark = pytest.mark.slow


@pytest.fixture
def node(tmp_path):
    n = NodeProcess(str(tmp_path / "n")).start()
    yield n
    n.stop()


def raw_http(port: int, data: bytes, timeout: float = 5.0, half_close: bool = False) -> bytes:
    """Send raw bytes and read until the server closes the connection.

    :param half_close: end our side after sending (for requests that are
        incomplete on purpose, so the server sees the end at once).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            pass
    return b"".join(chunks)


def test_write_and_read_over_a_real_socket(node: NodeProcess) -> None:
    """The quick start works against a real node."""
    status, put = node.request("PUT", "/v1/store/message", b"hello, world")
    assert status == 200
    status, got = node.request("GET", "/v1/store/message")
    assert got["value"] == "hello, world" and got["rev"] == put["rev"]


def test_start_up_log_says_where_it_listens(node: NodeProcess) -> None:
    """The log names the API address and the cluster."""
    log = node.read_log()
    assert f"http://{node.addr}/v1/" in log
    assert "cluster 'local'" in log


def test_declared_oversized_body_is_413(node: NodeProcess) -> None:
    """A Content-Length over --max-value answers 413 without buffering it."""
    status, body = node.request("PUT", "/v1/store/big", b"x" * 40000)
    assert (status, body["error"]) == (413, "TOO_LARGE")


def test_chunked_oversized_body_is_413(node: NodeProcess) -> None:
    """A chunked body that grows past the cap is refused and not stored."""
    chunk = b"x" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    reply = raw_http(node.port, b"PUT /v1/store/big HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" % node.port + body)
    assert reply.startswith(b"HTTP/1.1 413")
    assert node.request("GET", "/v1/store/big")[0] == 404


def test_endless_body_is_cut_off(node: NodeProcess) -> None:
    """A client streaming a body forever is disconnected and nothing is
    written; the node serves on. (Whether the client also reads the 413
    depends on whether its kernel saw the node's answer before its reset:
    tests/server/test_limits.py shows the answer, in memory.)"""
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as s:
        s.sendall(b"PUT /v1/store/big HTTP/1.1\r\nHost: localhost:%d\r\nTransfer-Encoding: chunked\r\n\r\n" % node.port)
        chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
        try:
            for _ in range(200):
                s.sendall(chunk)
        except OSError:
            pass
        assert closed_by_node(s)
    assert node.request("GET", "/v1/store/big")[0] == 404
    assert node.request("GET", "/v1/rev")[0] == 200


def test_client_vanishing_mid_watch_is_harmless(node: NodeProcess) -> None:
    """Watchers that disconnect cost nothing further and the node keeps serving."""
    socks = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", node.port))
        s.sendall(b"GET /v1/watch?glob=/**&timeout=300 HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % node.port)
        socks.append(s)
    time.sleep(0.3)
    for s in socks:
        s.close()
    assert node.request("PUT", "/v1/store/after", b"1")[0] == 200
    assert node.request("GET", "/v1/store/after")[1]["value"] == "1"


def test_malformed_http_gets_400_and_the_node_lives_on(node: NodeProcess) -> None:
    """Garbage request lines are refused; the node keeps serving."""
    for garbage in (b"\x00\x01\x02garbage\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\nHost\r\n\r\n"):
        raw_http(node.port, garbage, timeout=2, half_close=True)
    assert node.request("GET", "/v1/rev")[0] == 200


def test_secrets_over_a_real_socket(tmp_path) -> None:
    """DOOZER_RWSECRET protects every request; the right one is let in."""
    n = NodeProcess(str(tmp_path / "s"), env={"DOOZER_RWSECRET": "s3cret"}).start(wait=False)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = n.request("GET", "/v1/rev", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert (status, body["error"]) == (401, "UNAUTHORIZED")
        status, _ = n.request("GET", "/v1/rev", headers={"Authorization": "Bearer s3cret"})
        assert status == 200
    finally:
        n.stop()


def test_tls(tmp_path) -> None:
    """--tls-cert/--tls-key serve the API over HTTPS."""
    cert, key = self_signed_cert(tmp_path)
    n = NodeProcess(str(tmp_path / "t"), "--tls-cert", str(cert), "--tls-key", str(key))
    n.start(wait=False)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 30
        while True:
            try:
                import urllib.request

                body = urllib.request.urlopen(
                    f"https://127.0.0.1:{n.port}/v1/rev", context=context, timeout=2
                ).read()
                break
            except OSError:
                assert time.monotonic() < deadline, n.read_log()
                time.sleep(0.2)
        assert "rev" in json.loads(body)
    finally:
        n.stop()


PATHS = ["/fz/a", "/fz/b", "/fz/c/d", "/fz/c", "/fz/e/f/g", "/fz//x", "/fz/../x", "/fz/.", "/fz/%ff",
         "/fz/" + "y" * 300, "/ctl/name", "/fz/a/b"]


def _random_request(rng: random.Random, port: int) -> tuple[bytes, tuple]:
    """One random request (valid or not) and what it means for the model."""
    kind = rng.random()
    path = rng.choice(PATHS)
    if kind < 0.05:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))) + b"\r\n\r\n", ("junk",)
    if kind < 0.1:
        return b"GET /v1/" + rng.choice([b"store", b"x", b"watch", b"backup"]) + b" HTTP/1.1\r\n", ("junk",)
    if kind < 0.12:
        method = rng.choice(["GET", "GET", "GET", "POST", "HEAD", "DELETE"])
        query = rng.choice(["", "", "?rev=5", "?x=%ff", "?consistent=1&consistent=0"])
        head = f"{method} /v1/backup{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        return head.encode(), ("backup", method)
    if kind < 0.15:
        # SPEC §11's probes: no secret, GET/HEAD only, any query
        method = rng.choice(["GET", "GET", "HEAD", "POST", "DELETE"])
        probe = rng.choice(["/livez", "/readyz"]) + rng.choice(["", "", "/", "%ff", "?x=%ff"])
        auth = rng.choice(["", "Authorization: Bearer wrong\r\n"])
        head = f"{method} {probe} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
        return head.encode(), ("probe", method, probe)
    if kind < 0.27:
        body = _random_txn_body(rng)
        method = rng.choice(["POST"] * 8 + ["GET", "PUT"])
        head = f"{method} /v1/txn HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body, ("txn", body)
    method = rng.choice(["PUT", "PUT", "PUT", "DELETE", "GET", "POST", "PATCH"])
    query = rng.choice(["", "?rev=0", "?rev=-1", "?rev=abc", "?rev=5", "?rev=1&rev=2", "?offset=-1"])
    size = rng.choice([0, 1, 10, 100, 40000])
    body = bytes(rng.getrandbits(8) for _ in range(min(size, 100))) * (size // 100 or 1)
    body = body[:size]
    head = f"{method} /v1/store{path}{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    if method in ("PUT", "POST") and rng.random() < 0.2:
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunked, (method, path, body)
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body, (method, path, body)


def _random_txn_body(rng: random.Random) -> bytes:
    """A POST /v1/txn body: valid, or hostile (wrong types, too many ops, a
    path twice, over the size limit, damaged JSON, junk)."""
    count = rng.choice([0, 1, 2, 3, 129])

    def op() -> dict:
        doc: dict = {"op": rng.choice(["set", "set", "del", "put", 5]), "path": rng.choice(PATHS)}
        if rng.random() < 0.8:
            # one value over the body's limit, at most (past 16 times the
            # limit the node answers 413 and closes while we still send)
            big = "x" * (40000 if count < 4 else 1)
            doc["value"] = rng.choice(["", "v", "AAE=", "!!", "\u00e9", None, 7, big])
        if rng.random() < 0.2:
            doc["encoding"] = rng.choice(["base64", "hex", None])
        if rng.random() < 0.05:
            doc[rng.choice(["lease", "rev", "x"])] = rng.choice(["L1", 3, ""])
        return doc
    doc: dict = {}
    if rng.random() < 0.7:
        doc["compare"] = [{"path": rng.choice(PATHS), "rev": rng.choice([-1, 0, 0, 5, 10**6, -2, "0"])}
                          for _ in range(rng.choice([0, 1, 2, 129]))]
    if rng.random() < 0.9:
        doc["ops"] = [op() for _ in range(count)]
    if rng.random() < 0.05:
        doc["extra"] = True
    body = json.dumps(doc).encode()
    damage = rng.random()
    if damage < 0.05:
        return body[: rng.randrange(len(body) + 1)]
    if damage < 0.1:
        return bytes(b ^ (rng.getrandbits(8) if rng.random() < 0.05 else 0) for b in body)
    if damage < 0.13:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 100)))
    return body


def _txn_ops(body: bytes) -> list[tuple[str, str, bytes]]:
    """The changes of a transaction the node accepted, as (method, path, value)."""
    import base64

    out = []
    for op in json.loads(body).get("ops", []):
        if op["op"] == "del":
            out.append(("DELETE", op["path"], b""))
        elif op.get("encoding") == "base64":
            out.append(("PUT", op["path"], base64.b64decode(op["value"])))
        else:
            out.append(("PUT", op["path"], op["value"].encode()))
    return out


def _probe_status(method: str, probe: str) -> bytes:
    """What a healthy one-member node answers a probe request."""
    if "%ff" in probe.split("?")[0]:
        return b"400"  # not UTF-8
    if probe.split("?")[0].endswith("/"):
        return b"404"
    return b"200" if method in ("GET", "HEAD") else b"405"


def _backup_rev(reply: bytes) -> int:
    """The rev of the backup in a chunked HTTP answer (checked whole)."""
    from doozer.store.backup import decode

    body, data = reply.split(b"\r\n\r\n", 1)[1], b""
    while True:
        size_line, body = body.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return decode(data).rev
        data, body = data + body[:size], body[size + 2:]


def test_fuzz_keeps_exactly_the_acknowledged_writes(node: NodeProcess) -> None:
    """A few thousand seeded random requests: afterwards the node answers and
    holds exactly the writes that got 200 (seed printed for replay). A fifth
    of them go to the lease endpoints (tests/leasefuzz.py), each answer
    checked there, and the leases and leased files are checked at the end."""
    seed = random.randrange(1 << 30)
    print(f"fuzz seed {seed}")
    rng = random.Random(seed)
    leases = LeaseFuzz(random.Random(seed + 1))
    acked: list[tuple[int, str, str, bytes]] = []
    txns = 0
    for _ in range(3000):
        if rng.random() < 0.2:
            data, meaning = leases.request(node.port)
            leases.check(data, meaning, raw_http(node.port, data, timeout=5), seed)
            continue
        data, meaning = _random_request(rng, node.port)
        reply = raw_http(node.port, data, timeout=5, half_close=meaning[0] == "junk")
        status = reply[9:12]
        assert status != b"500", (seed, data[:200], reply[:500])
        if meaning[0] == "backup" and meaning[1] == "GET":
            assert status == b"200", (seed, reply[:500])
            assert _backup_rev(reply) >= max((a[0] for a in acked), default=0)
        if meaning[0] == "probe":
            assert status == _probe_status(meaning[1], meaning[2]), (seed, data, reply[:500])
        if meaning[0] in ("PUT", "DELETE") and status == b"200":
            body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
            acked.append((body["rev"], meaning[0], body["path"], meaning[2]))
        if meaning[0] == "txn":
            assert status in (b"200", b"400", b"403", b"404", b"405", b"409", b"413"), (
                seed, data[:300], reply[:500])
            if status == b"200":
                rev = json.loads(reply.split(b"\r\n\r\n", 1)[1])["rev"]
                acked.extend((rev, *op) for op in _txn_ops(meaning[1]))
                txns += 1
    assert len(acked) > 100, "the fuzz should also make plenty of valid writes"
    assert txns > 10, "the fuzz should also make valid transactions"
    model: dict[str, bytes] = {}
    for _, method, path, body in sorted(acked):
        if method == "PUT":
            model[path] = body
        else:
            model.pop(path, None)
    status, walk = node.request("GET", "/v1/walk?glob=/fz/**&limit=1000")
    assert status == 200
    import base64

    held = {
        f["path"]: base64.b64decode(f["value"]) if f.get("encoding") == "base64" else f["value"].encode()
        for f in walk["files"]
    }
    assert held == model, f"seed {seed}"
    leases.check_node(node, seed)
    assert min(leases.counts.values()) > 0, leases.counts  # each kind of success
    assert node.request("GET", "/readyz")[0] == 200
