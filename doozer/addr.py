"""Addresses: ``HOST:PORT`` of nodes, as tuples (used by every part)."""

from __future__ import annotations

from typing import Optional

Addr = tuple[str, int]


def parse_addr(text: str, default_host: Optional[str] = None) -> Addr:
    """``HOST:PORT`` (or ``PORT`` with ``default_host``) as a tuple.

    :raises ValueError: with a message saying what is wrong.
    """
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = "", text.strip()
    host = host.strip("[]")
    if not host:
        if default_host is None:
            raise ValueError(f"{text!r} is not HOST:PORT")
        host = default_host
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} has no valid port (1-65535)")
    return host, int(port)


def format_addr(addr: Addr) -> str:
    """The ``HOST:PORT`` text of an address."""
    return f"{addr[0]}:{addr[1]}"
