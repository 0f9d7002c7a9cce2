"""``HOST:PORT`` text (doozer/addr.py): IPv4, IPv6 in brackets, host names."""

from __future__ import annotations

import pytest

from doozer.addr import format_addr, is_ip, is_ipv6, parse_addr


@pytest.mark.parametrize(
    "text, addr",
    [
        ("127.0.0.1:8046", ("127.0.0.1", 8046)),
        ("[::1]:8046", ("::1", 8046)),
        ("[fe80::1:2]:1", ("fe80::1:2", 1)),
        ("node-a:8046", ("node-a", 8046)),
        ("Node-A.Example.COM.:65535", ("node-a.example.com", 65535)),  # case, trailing dot
        ("doozer-0.doozer.default.svc.cluster.local:8046", ("doozer-0.doozer.default.svc.cluster.local", 8046)),
        (" localhost:8046 ", ("localhost", 8046)),
    ],
)
def test_parse_addr(text: str, addr: tuple) -> None:
    assert parse_addr(text) == addr


@pytest.mark.parametrize(
    "text, why",
    [
        ("::1:8046", "brackets"),  # which colon starts the port?
        ("[::1]8046", "port"),
        ("[::1:8046", "brackets"),
        ("[127.0.0.1]:8046", "brackets"),  # brackets are for IPv6 only
        ("[nope]:8046", "brackets"),
        ("a b:8046", "neither"),
        ("-a:8046", "neither"),
        ("a..b:8046", "neither"),
        ("x" * 64 + ":8046", "neither"),  # a label is at most 63 characters
        ("a:0", "port"),
        ("a:65536", "port"),
        ("a:http", "port"),
        ("a:", "port"),
        (":8046", "not HOST:PORT"),
        ("8046", "not HOST:PORT"),
    ],
)
def test_parse_addr_refuses(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_addr(text)


def test_default_host_for_a_bare_port() -> None:
    assert parse_addr("8000", default_host="::1") == ("::1", 8000)
    assert parse_addr(":8000", default_host="node-a") == ("node-a", 8000)


@pytest.mark.parametrize("text", ["127.0.0.1:8046", "[::1]:8046", "node-a:8046", "[2001:db8::7]:9"])
def test_format_is_the_text_parsed(text: str) -> None:
    """What a node writes in /ctl/node/<id>/addr reads back as itself."""
    assert format_addr(parse_addr(text)) == text


def test_format_takes_twisteds_ipv6_addresses() -> None:
    """Twisted gives an IPv6 datagram's source as (host, port, flow, scope)."""
    assert format_addr(("::1", 5, 0, 0)) == "[::1]:5"


def test_is_ip() -> None:
    assert is_ip("10.0.0.1") and is_ip("::1") and not is_ip("localhost")
    assert is_ipv6("::1") and not is_ipv6("10.0.0.1") and not is_ipv6("a")
