"""Addresses: ``HOST:PORT`` of nodes, as tuples (used by every part).

HOST is an IPv4 address, an IPv6 address in brackets (``[::1]:8046``), or a
host name (SPEC §5). Names are resolved elsewhere (:mod:`doozer.node.names`);
this module only reads and writes the text, so that an address parsed from
``/ctl/node/<id>/addr`` and formatted again is the same text.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Optional

Addr = tuple[str, int]

#: A host name: RFC 1123 labels (``_`` tolerated), at most 253 characters,
#: an optional trailing dot.
_NAME = re.compile(r"(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
                   r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?", re.IGNORECASE)


def is_ip(host: str) -> bool:
    """Whether ``host`` is an IP address (not a name)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_ipv6(host: str) -> bool:
    """Whether ``host`` is an IPv6 address."""
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def parse_addr(text: str, default_host: Optional[str] = None) -> Addr:
    """``HOST:PORT`` (or ``PORT`` with ``default_host``) as a tuple; an IPv6
    host comes without its brackets, a name in lower case.

    :raises ValueError: with a message saying what is wrong.
    """
    text = text.strip()
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or not is_ipv6(inside):
            raise ValueError(f"{text!r}: an IPv6 address goes in brackets, as [::1]:8046")
        if not rest.startswith(":"):
            raise ValueError(f"{text!r} has no valid port (1-65535)")
        host, port = inside, rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = "", text
        if ":" in host:
            raise ValueError(f"{text!r}: an IPv6 address goes in brackets, as [::1]:8046")
        if not host:
            if default_host is None:
                raise ValueError(f"{text!r} is not HOST:PORT")
            host = default_host
        elif not is_ip(host):
            if _NAME.fullmatch(host) is None:
                raise ValueError(f"{text!r}: {host!r} is neither an IP address nor a host name")
            host = host.lower().rstrip(".")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} has no valid port (1-65535)")
    return host, int(port)


def format_addr(addr: tuple) -> str:
    """The ``HOST:PORT`` text of an address (an IPv6 host in brackets).

    Takes Twisted's four-field IPv6 addresses too (the last two are dropped).
    """
    host = addr[0]
    if ":" in host:
        return f"[{host}]:{addr[1]}"
    return f"{host}:{addr[1]}"
