"""A real node process: HTTP and doozerd's protocol on one port, plain and TLS."""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest

from nativeutil import DEL, SET, SocketConn, encode, err
from procutil import NodeProcess, self_signed_cert

pytestmark = pytest.mark.slow


@pytest.fixture
def node(tmp_path):
    n = NodeProcess(str(tmp_path / "n")).start()
    yield n
    n.stop()


def _closed_by_node(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_both_protocols_on_one_port_share_one_store(node: NodeProcess) -> None:
    """A native SET is read back over HTTP on the same port, and an HTTP PUT over native."""
    c = SocketConn("127.0.0.1", node.port)
    try:
        rev = c.call("SET", path="/shared/a", rev=0, value=b"from native").rev
        status, body = node.request("GET", "/v1/store/shared/a")
        assert (status, body["value"], body["rev"]) == (200, "from native", rev)
        status, body = node.request("PUT", "/v1/store/shared/b", b"from http")
        r = c.call("GET", path="/shared/b")
        assert (r.value, r.rev) == (b"from http", body["rev"])
        assert c.call("SELF").value.decode() == node.request("GET", "/v1/self")[1]["id"]
    finally:
        c.close()


def test_wait_answers_when_an_http_write_happens(node: NodeProcess) -> None:
    """A pending WAIT does not hold up a pipelined GET; an HTTP write then answers it."""
    c = SocketConn("127.0.0.1", node.port)
    try:
        start = c.call("REV").rev + 1
        wait_tag = c.send(verb="WAIT", path="/w/**", rev=start)
        get_tag = c.send(verb="GET", path="/nothing")
        r = c.recv()
        assert r.tag == get_tag and r.rev == 0
        node.request("PUT", "/v1/store/w/x", b"hello")
        r = c.recv()
        assert (r.tag, r.path, r.value, r.flags) == (wait_tag, "/w/x", b"hello", SET)
        wait_tag = c.send(verb="WAIT", path="/w/**", rev=r.rev + 1)
        node.request("DELETE", "/v1/store/w/x")
        r = c.recv()
        assert (r.tag, r.flags) == (wait_tag, DEL)
    finally:
        c.close()


def test_bad_connections_are_closed_and_the_node_keeps_serving(node: NodeProcess) -> None:
    """Oversized and malformed frames are closed, abandoned WAITs released; others are served."""
    with socket.create_connection(("127.0.0.1", node.port)) as big:
        big.sendall(b"\x00\xff\xff\xff")  # 16 MiB announced
        assert _closed_by_node(big)
    with socket.create_connection(("127.0.0.1", node.port)) as bad:
        bad.sendall(b"\x00\x00\x00\x03\xff\xff\xff")
        assert _closed_by_node(bad)
    for _ in range(20):  # clients leaving with WAITs pending
        c = SocketConn("127.0.0.1", node.port)
        c.send(verb="WAIT", path="/never/**", rev=c.call("REV").rev + 1)
        c.close()
    c = SocketConn("127.0.0.1", node.port)
    try:
        assert err(c.call("SET", path="/still", rev=-1, value=b"ok")) is None
        assert err(c.call("NOP")) is None
    finally:
        c.close()
    assert node.request("GET", "/v1/store/still")[1]["value"] == "ok"


def test_garbage_gets_http_400(node: NodeProcess) -> None:
    """Bytes that are neither protocol (not starting with 0x00) get HTTP's 400."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01 definitely not http\r\n\r\n")
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400")


def test_secrets_over_native(tmp_path) -> None:
    """With DOOZER_RWSECRET set, a native client must ACCESS first."""
    n = NodeProcess(str(tmp_path / "s"), env={"DOOZER_RWSECRET": "s3cret"})
    n.start(wait=False)
    try:
        c = _connect_when_up(n.port)
        r = c.call("REV")
        assert (err(r), r.err_detail) == ("OTHER", "permission denied")
        assert err(c.call("ACCESS", value=b"s3cret")) is None
        assert err(c.call("SET", path="/x", rev=-1, value=b"y")) is None
        c.close()
    finally:
        n.stop()


def _connect_when_up(port: int, wrap=None) -> SocketConn:
    deadline = time.monotonic() + 30
    while True:
        try:
            c = SocketConn("127.0.0.1", port)
            if wrap is not None:
                c.sock = wrap(c.sock)
            c.send(verb="REV")
            c.recv()
            return c
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_tls_wraps_both_protocols(tmp_path) -> None:
    """With --tls-cert both protocols are served inside TLS on the one port."""
    cert, key = self_signed_cert(tmp_path)
    n = NodeProcess(str(tmp_path / "t"), "--tls-cert", str(cert), "--tls-key", str(key))
    n.start(wait=False)
    context = ssl.create_default_context(cafile=str(cert))
    try:
        c = _connect_when_up(n.port, lambda s: context.wrap_socket(s, server_hostname="127.0.0.1"))
        rev = c.call("SET", path="/tls", rev=-1, value=b"secure").rev
        c.close()
        with socket.create_connection(("127.0.0.1", n.port)) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /v1/store/tls HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % n.addr.encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        body = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert (body["value"], body["rev"]) == ("secure", rev)
        with socket.create_connection(("127.0.0.1", n.port), timeout=5) as plain:
            plain.sendall(encode(tag=1, verb="REV"))  # not TLS: refused by the TLS layer
            assert _closed_by_node(plain)
    finally:
        n.stop()
