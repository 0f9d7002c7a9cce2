"""``twistd doozer``: the options of SPEC §5 and the service they build."""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Optional

from twisted.application.service import IService
from twisted.python import usage

from doozer.config import Config, parse_addr

#: A proposal travels in one UDP datagram; keep room for the path and framing.
MAX_VALUE_CEILING = 60000


class Options(usage.Options):
    """Command-line options of ``twistd doozer`` (SPEC §5)."""

    synopsis = "[options]"
    longdesc = (
        "Start one doozer node. With no options: a one-member cluster with the "
        "API on 127.0.0.1:8046 and the WebView on 127.0.0.1:8000."
    )
    optParameters = [
        ["listen", "l", "127.0.0.1:8046", "HOST:PORT of this node: HTTP API on TCP, peers on UDP"],
        ["web", "w", None, "WebView address HOST:PORT (default: same host, port 8000); 'false' disables it"],
        ["peers", "p", None, "comma-separated HOST:PORT of other nodes to attach to or start a cluster with"],
        ["cluster", "c", "local", "cluster name (/ctl/name)"],
        ["timeout", None, "60", "seconds of silence after which a member is removed from its CAL slot"],
        ["fill", None, "0.1", "seconds before a silent member's sequence number is filled with a no-op"],
        ["write-timeout", None, "10", "seconds a write waits for its decision before it answers 503 UNAVAILABLE"],
        ["hist", None, "2000", "revs of history kept for reads at old revs and watches"],
        ["pulse", None, "1", "seconds between records of the applied rev in /ctl/node/<id>/applied"],
        ["max-value", None, "32768", "largest accepted file body in bytes (at most 60000)"],
        ["rw-secret-file", None, None, "file holding the read-write secret (or DOOZER_RWSECRET)"],
        ["ro-secret-file", None, None, "file holding the read-only secret (or DOOZER_ROSECRET)"],
        ["tls-cert", None, None, "PEM certificate: serve the client port over TLS"],
        ["tls-key", None, None, "PEM private key for --tls-cert"],
        ["cluster-key-file", None, None, "shared key authenticating every peer datagram (HMAC-SHA256)"],
    ]
    optFlags = [
        ["access-log", None, "log one line per HTTP request (off by default: it costs throughput)"],
    ]

    def postOptions(self) -> None:
        self["config"] = build_config(self, os.environ)


def _number(opts: Any, name: str, kind: type, minimum: float) -> Any:
    try:
        value = kind(opts[name])
    except (TypeError, ValueError):
        raise usage.UsageError(f"--{name} must be a number, not {opts[name]!r}") from None
    if value < minimum:
        raise usage.UsageError(f"--{name} must be at least {minimum}")
    return value


def _secret(path: Optional[str], env: Optional[str], name: str) -> Optional[bytes]:
    if path:
        try:
            with open(path, "rb") as f:
                secret = f.read().strip()
        except OSError as e:
            raise usage.UsageError(f"cannot read --{name}: {e}") from None
        if not secret:
            raise usage.UsageError(f"--{name} {path} is empty")
        return secret
    return env.encode() if env else None


def _ip_literal(addr: tuple[str, int], name: str) -> None:
    """Peers are reached over UDP, which takes IP addresses only (no DNS)."""
    try:
        ipaddress.ip_address(addr[0])
    except ValueError:
        raise usage.UsageError(
            f"--{name}: {addr[0]!r} is not an IP address; peers talk over UDP "
            "by address, so name every node by its IP:PORT (as its --listen)"
        ) from None


def build_config(opts: Any, environ: Any) -> Config:
    """Check the options and turn them into a :class:`Config`.

    :raises usage.UsageError: with a message saying what to change.
    """
    try:
        listen = parse_addr(opts["listen"])
    except ValueError as e:
        raise usage.UsageError(f"--listen: {e}") from None
    if listen[0] in ("0.0.0.0", "::", ""):
        raise usage.UsageError(
            "--listen must name the address peers and clients reach this node at, "
            "not 0.0.0.0"
        )
    _ip_literal(listen, "listen")
    web: Optional[tuple[str, int]]
    if opts["web"] is None:
        web = (listen[0], 8000)
    elif opts["web"].lower() in ("false", "no", "off", "0", ""):
        web = None
    else:
        try:
            web = parse_addr(opts["web"], default_host=listen[0])
        except ValueError as e:
            raise usage.UsageError(f"--web: {e}") from None
    peers = []
    for peer in (opts["peers"] or "").split(","):
        if peer.strip():
            try:
                peers.append(parse_addr(peer.strip()))
            except ValueError as e:
                raise usage.UsageError(f"--peers: {e}") from None
            _ip_literal(peers[-1], "peers")
    max_value = _number(opts, "max-value", int, 0)
    if max_value > MAX_VALUE_CEILING:
        raise usage.UsageError(
            f"--max-value {max_value} cannot fit one UDP datagram with its path and "
            f"framing; use at most {MAX_VALUE_CEILING}"
        )
    rw = _secret(opts["rw-secret-file"], environ.get("DOOZER_RWSECRET"), "rw-secret-file")
    ro = _secret(opts["ro-secret-file"], environ.get("DOOZER_ROSECRET"), "ro-secret-file")
    if ro is not None and rw is None:
        raise usage.UsageError(
            "a read-only secret needs a read-write secret too "
            "(DOOZER_RWSECRET or --rw-secret-file)"
        )
    if bool(opts["tls-cert"]) != bool(opts["tls-key"]):
        raise usage.UsageError("--tls-cert and --tls-key go together")
    for name in ("tls-cert", "tls-key"):
        if opts[name] and not os.path.isfile(opts[name]):
            raise usage.UsageError(f"--{name} {opts[name]} is not a file")
    cluster_key = None
    if opts["cluster-key-file"]:
        cluster_key = _secret(opts["cluster-key-file"], None, "cluster-key-file")
    cluster = opts["cluster"]
    if not cluster or "/" in cluster:
        raise usage.UsageError("--cluster must be a non-empty name without '/'")
    return Config(
        listen=listen,
        web=web,
        peers=peers,
        cluster=cluster,
        timeout=_number(opts, "timeout", float, 0.001),
        fill=_number(opts, "fill", float, 0.0001),
        write_timeout=_number(opts, "write-timeout", float, 0.001),
        hist=_number(opts, "hist", int, 1),
        pulse=_number(opts, "pulse", float, 0),
        max_value=max_value,
        rw_secret=rw,
        ro_secret=ro,
        tls_cert=opts["tls-cert"],
        tls_key=opts["tls-key"],
        cluster_key=cluster_key,
        access_log=bool(opts["access-log"]),
    )


def makeService(options: Options) -> IService:
    """The twistd entry point: one node as a service."""
    from twisted.internet import reactor

    from doozer.service import NodeService

    return NodeService(options["config"], reactor)
