"""Doozer URIs (SPEC §4): where the nodes are and which secret to present.

Two forms are accepted:

- ``doozer:?ca=HOST:PORT&ca=HOST:PORT&sk=SECRET`` — doozerd's form: one
  ``ca`` (cluster address) per node to try, in turn, and an optional secret
  ``sk``. Other parameters doozerd knows (``cn``, the cluster name) are
  accepted and ignored.
- ``http://HOST:PORT`` or ``https://HOST:PORT`` — a single node; a trailing
  ``/`` is allowed, any other path is refused.

Both parse to a :class:`Target`: the base URLs of the nodes and the secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qs, urlsplit

#: The URI used when none is given (SPEC §4).
DEFAULT_URI = "doozer:?ca=127.0.0.1:8046"

#: The port of a ``ca`` given without one (doozerd's client port).
DEFAULT_PORT = 8046


class BadURI(ValueError):
    """A doozer URI that cannot be used; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where to send requests.

    :ivar bases: base URLs (``http://host:port``), in the order to try them.
    :ivar secret: the secret to present as ``Authorization: Bearer``, if any.
    """

    bases: tuple[str, ...]
    secret: Optional[str] = None


def parse_uri(uri: str) -> Target:
    """Parse a doozer URI or an http(s) URL into a :class:`Target`.

    :param uri: ``doozer:?ca=H:P&...&sk=S`` or ``http(s)://H:P``.
    :raises BadURI: when the URI has no usable address or another scheme.
    """
    uri = uri.strip()
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "doozer":
        query = parts.query
        if not query and parts.path.startswith("?"):
            query = parts.path[1:]
        args = parse_qs(query, keep_blank_values=True)
        cas = [ca for value in args.get("ca", []) for ca in value.split(",") if ca]
        if not cas:
            raise BadURI(f"{uri!r} names no node: add ca=HOST:PORT")
        secrets = args.get("sk", [])
        secret = secrets[-1] if secrets else None
        return Target(tuple(_base("http", ca, uri) for ca in cas), secret or None)
    if scheme in ("http", "https"):
        if parts.path not in ("", "/") or parts.fragment:
            raise BadURI(f"{uri!r}: give only http(s)://HOST:PORT, without a path")
        if not parts.netloc:
            raise BadURI(f"{uri!r} names no host")
        args = parse_qs(parts.query, keep_blank_values=True)
        secrets = args.get("sk", [])
        return Target((_base(scheme, parts.netloc, uri),), secrets[-1] if secrets else None)
    raise BadURI(
        f"{uri!r} is not a doozer URI: use doozer:?ca=HOST:PORT or http://HOST:PORT"
    )


def _base(scheme: str, hostport: str, uri: str) -> str:
    """``scheme://host:port`` from ``host:port`` (port defaults to 8046)."""
    hostport = hostport.strip()
    if hostport.startswith("["):  # [v6]:port
        host, _, rest = hostport[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        host = f"[{host}]"
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
    else:
        host, port_text = hostport, ""
    if not host or host == "[]":
        raise BadURI(f"{uri!r}: {hostport!r} has no host")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BadURI(f"{uri!r}: {hostport!r} has no valid port")
        port = int(port_text)
    else:
        port = DEFAULT_PORT if scheme == "http" and "://" not in uri else 0
    if port:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"
