"""Host and Origin rules (SPEC §12 "Browsers"), in memory: the parsers, then
whole requests through the node's Site with a :class:`HostPolicy`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from doozer.server.hosts import (
    HostPolicy,
    canonical_origin,
    check_allowed_host,
    parse_host,
    parse_origin,
)
from doozer.server.http.site import Site
from doozer.server.http.webview import WebView
from limitsutil import PORT, Front, http

OWN = f"127.0.0.1:{PORT}"


def answer(front: Front, request: bytes, factory: Any = None) -> tuple[int, dict[str, str], bytes]:
    """Send one request on a new connection: status, headers (lower case), body."""
    c = front.connect(factory=factory)
    c.send(request)
    front.settle()
    head, _, body = c.read().partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    pairs = (line.split(": ", 1) for line in lines[1:])
    headers = {name.lower(): value for name, value in pairs}
    return int(lines[0].split()[1]), headers, body


# ----------------------------------------------------------------------
# parsing


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8046", ("127.0.0.1", 8046)),
    ("LocalHost.:8046", ("localhost", 8046)),
    ("[::1]:8046", ("::1", 8046)),
    ("[::1]", ("::1", 80)),
    ("doozer.example.com", ("doozer.example.com", 80)),
    ("a:0", None), ("a:65536", None), ("[zz::1]:80", None), ("a b", None), ("", None),
    ("evil.example:80@x", None), ("a:80:81", None),
])
def test_parse_host(text: str, expected: Any) -> None:
    """Host values parse to (host, port) with the default port; anything else is None."""
    assert parse_host(text, 80) == expected


def test_origins_are_compared_as_browsers_send_them() -> None:
    """An origin names scheme, host and port; the default port is left out."""
    assert parse_origin("https://App.Example") == ("https", "app.example", 443)
    assert parse_origin("null") is None and parse_origin("file://") is None
    assert canonical_origin("https://app.example:443") == "https://app.example"
    assert canonical_origin("http://[::1]:8000") == "http://[::1]:8000"
    with pytest.raises(ValueError):
        canonical_origin("app.example")
    with pytest.raises(ValueError):
        check_allowed_host("bad host")


# ----------------------------------------------------------------------
# Host


@pytest.mark.parametrize("host", [OWN, f"localhost:{PORT}", f"[::1]:{PORT}", f"LOCALHOST:{PORT}"])
def test_own_addresses_are_answered(host: str) -> None:
    """The node's address and the loopback names with its port are served."""
    f = Front(hosts={})
    assert answer(f, http("/v1/rev", host=host))[0] == 200


@pytest.mark.parametrize("host", ["evil.example", f"evil.example:{PORT}", "127.0.0.1:8000",
                                  "localhost", "127.0.0.1:8046:1", "127.0.0.1%2f"])
def test_other_hosts_are_misdirected(host: str) -> None:
    """Any other Host (DNS rebinding) is 421 MISDIRECTED with the usual JSON error body."""
    f = Front(hosts={})
    f.node.set("/secret", b"s")
    f.settle()
    status, headers, body = answer(f, http("/v1/store/secret", host=host))
    assert status == 421
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == "MISDIRECTED" and b'"s"' not in body
    assert f.limits.counters["misdirected"] == 1


def test_misdirected_before_authentication_and_writes() -> None:
    """A write under a foreign Host is refused before anything else, and not made."""
    f = Front(hosts={}, rw=b"secret")
    rev = f.node.store.rev
    status, _, body = answer(f, http("/v1/nop", method="POST", host="evil.example",
                                     Authorization="Bearer secret"))
    assert (status, json.loads(body)["error"]) == (421, "MISDIRECTED")
    assert f.node.store.rev == rev


def test_allowed_hosts() -> None:
    """--allowed-hosts: a bare name with any port, NAME:PORT with that port only, * anything."""
    f = Front(hosts={"allowed_hosts": ["doozer.example", "other.example:9"]})
    assert answer(f, http("/v1/rev", host="doozer.example"))[0] == 200
    assert answer(f, http("/v1/rev", host="Doozer.Example:443"))[0] == 200
    assert answer(f, http("/v1/rev", host="other.example:9"))[0] == 200
    assert answer(f, http("/v1/rev", host="other.example:10"))[0] == 421
    anything = Front(hosts={"allowed_hosts": ["*"]})
    assert answer(anything, http("/v1/rev", host="whatever.example"))[0] == 200


def test_missing_host() -> None:
    """HTTP/1.0 without Host is served (no browser sends that); HTTP/1.1 without one,
    or with two, is misdirected."""
    f = Front(hosts={})
    assert answer(f, b"GET /v1/rev HTTP/1.0\r\n\r\n")[0] == 200
    assert answer(f, b"GET /v1/rev HTTP/1.1\r\n\r\n")[0] == 421
    two = f"GET /v1/rev HTTP/1.1\r\nHost: {OWN}\r\nHost: {OWN}\r\n\r\n".encode()
    assert answer(f, two)[0] == 421


def test_webview_static_pages_are_misdirected_too() -> None:
    """The WebView's page under a foreign Host is a 421 JSON error, not the page."""
    f = Front(hosts={})
    web = Site(WebView(f.site.resource).resource(), max_body=1024, limits=f.limits,
               hosts=f.site.hosts, node=f.node)
    from doozer.server.sniff import SniffingFactory

    port = SniffingFactory(web, None, f.limits)
    status, headers, body = answer(f, http("/", host="evil.example"), factory=port)
    assert status == 421 and json.loads(body)["error"] == "MISDIRECTED"
    status, headers, body = answer(f, http("/", host=OWN), factory=port)
    assert status == 200 and headers["content-type"].startswith("text/html")


# ----------------------------------------------------------------------
# Origin


def test_same_origin_is_served() -> None:
    """A request whose Origin is the node's own address is served, writes included."""
    f = Front(hosts={})
    status, headers, _ = answer(f, http("/v1/nop", method="POST", Origin=f"http://{OWN}"))
    assert status == 200 and "access-control-allow-origin" not in headers


@pytest.mark.parametrize("method, path", [("POST", "/v1/nop"), ("PUT", "/v1/store/x"),
                                          ("GET", "/v1/rev"), ("DELETE", "/v1/store/x")])
def test_cross_origin_requests_are_forbidden(method: str, path: str) -> None:
    """A request from another origin is 403 FORBIDDEN and changes nothing (no rev burnt)."""
    f = Front(hosts={})
    rev = f.node.store.rev
    status, headers, body = answer(f, http(path, method=method, Origin="http://evil.example",
                                           Content_Length="0"))
    f.settle()
    assert (status, json.loads(body)["error"]) == (403, "FORBIDDEN")
    assert "access-control-allow-origin" not in headers
    assert f.node.store.rev == rev
    assert f.limits.counters["cross_origin_refused"] == 1


def test_any_host_does_not_open_origins() -> None:
    """--allowed-hosts '*' opens the Host check only: other origins are still refused."""
    f = Front(hosts={"allowed_hosts": ["*"]})
    rev = f.node.store.rev
    status, _, _ = answer(f, http("/v1/nop", method="POST", Origin="http://evil.example"))
    assert status == 403 and f.node.store.rev == rev


def test_null_origin_is_forbidden() -> None:
    """``Origin: null`` (sandboxed frames, file pages) is another origin too."""
    f = Front(hosts={})
    assert answer(f, http("/v1/rev", Origin="null"))[0] == 403


def test_cors_origin_may_read() -> None:
    """--cors-origin lets that origin read, with the headers a browser needs."""
    f = Front(hosts={"cors_origins": ["https://app.example"]})
    status, headers, _ = answer(f, http("/v1/rev", Origin="https://app.example"))
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert headers["vary"] == "Origin"
    assert "x-doozer-rev" in headers["access-control-expose-headers"].lower()
    assert answer(f, http("/v1/rev", Origin="https://other.example"))[0] == 403


@pytest.mark.parametrize("method, path", [("POST", "/v1/nop"), ("PUT", "/v1/store/x"),
                                          ("GET", "/v1/rev?consistent=1")])
def test_cors_origin_may_not_write_or_use_revs(method: str, path: str) -> None:
    """Even an allowed origin cannot change state or consume a rev cross-origin."""
    f = Front(hosts={"cors_origins": ["*"]})
    rev = f.node.store.rev
    status, _, body = answer(f, http(path, method=method, Origin="https://app.example",
                                     Content_Length="0"))
    f.settle()
    assert (status, json.loads(body)["error"]) == (403, "FORBIDDEN")
    assert f.node.store.rev == rev


def test_preflight() -> None:
    """A preflight from an allowed origin is 204 allowing GET and HEAD with
    Authorization; one asking for a write is 403."""
    f = Front(hosts={"cors_origins": ["https://app.example"]})
    status, headers, body = answer(f, http(
        "/v1/store/x", method="OPTIONS", Origin="https://app.example",
        Access_Control_Request_Method="GET", Access_Control_Request_Headers="authorization"))
    assert (status, body) == (204, b"")
    assert headers["access-control-allow-methods"] == "GET, HEAD"
    assert "authorization" in headers["access-control-allow-headers"].lower()
    assert headers["access-control-allow-origin"] == "https://app.example"
    status, headers, _ = answer(f, http(
        "/v1/store/x", method="OPTIONS", Origin="https://app.example",
        Access_Control_Request_Method="PUT"))
    assert status == 403 and "access-control-allow-origin" not in headers


def test_without_a_policy_every_host_is_answered() -> None:
    """A Site built without Host rules (library use, tests) answers any Host."""
    f = Front()
    assert answer(f, http("/v1/rev", host="anything.example"))[0] == 200


def test_policy_for_a_webview_port_answers_its_own_port_only() -> None:
    """The WebView's port answers its own HOST:PORT, not the API's."""
    policy = HostPolicy(("127.0.0.1", 8000), also=["127.0.0.1"])
    assert policy.host_allowed("127.0.0.1", 8000) and policy.host_allowed("localhost", 8000)
    assert not policy.host_allowed("127.0.0.1", 8046)
