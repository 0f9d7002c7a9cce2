"""``twistd doozer``: the options of SPEC §5 and the service they build."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any, Optional

from twisted.application.service import IService
from twisted.python import usage

from doozer.server.config import Config
from doozer.addr import format_addr, is_ip, is_ipv6, parse_addr

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
        ["listen", "l", "127.0.0.1:8046", "HOST:PORT of this node (an IPv4 address, [IPv6] or a host name, "
         "resolved at start): HTTP API on TCP, peers on UDP; peers and clients reach it there"],
        ["web", "w", None, "WebView address HOST:PORT (default: same host, port 8000); 'false' disables it"],
        ["peers", "p", None, "comma-separated HOST:PORT of other nodes to attach to or start a cluster with; "
         "host names are resolved at start and again when their node stops answering"],
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
        ["max-pending", None, "10000", "client writes a node holds proposed and not yet decided; "
         "past it (or past a client's fair share) a write answers 503 BUSY at once"],
        ["max-pending-bytes", None, str(16 * 1024 * 1024), "bytes of client writes a node holds "
         "proposed and not yet decided (503 BUSY past it)"],
        ["quota-bytes", None, str(1024 * 1024 * 1024), "bytes the store may hold (files and kept "
         "history); a write past it answers 507 NOSPACE, deletes always work"],
        ["cluster-key-file", None, None, "file of cluster keys, one per line (the first seals, all open): "
         "peer traffic is encrypted and authenticated; required with --peers or a non-loopback --listen"],
        ["max-conns", None, "10000", "client connections open at once, both client ports together "
         "(API and WebView); a new one past it is closed at once"],
        ["max-conns-per-ip", None, "1000", "client connections open at once from one IP address"],
        ["request-timeout", None, "10", "seconds a client has to send a whole request (HTTP head and "
         "body; a doozerd frame) after connecting or its previous answer; idle HTTP connections "
         "close then; 0 turns deadlines off"],
        ["max-output", None, str(4 * 1024 * 1024), "bytes of answers a client may leave unread before "
         "the node stops reading its connection"],
        ["max-outstanding", None, "1000", "doozerd-protocol requests waiting for their answer on one "
         "connection (WAITs, writes...); past it a request is answered BUSY at once"],
        ["allowed-hosts", None, None, "comma-separated names (NAME or NAME:PORT, or *) the client ports "
         "answer to besides their own address and localhost; other Host headers get 421"],
        ["data-dir", None, None, "keep the node's state in this dir (made when missing): it restarts "
         "under the same id with the same store; without it everything is in memory"],
        ["snapshot-every", None, "10000", "with --data-dir: instances applied between two snapshots "
         "of the store written to the data dir (the log before one is deleted)"],
        ["cors-origin", None, None, "comma-separated origins (https://app.example or *) allowed to read "
         "cross-origin; every other Origin gets 403, and no origin may write cross-origin"],
    ]
    optFlags = [
        ["access-log", None, "log one line per HTTP request (off by default: it costs throughput)"],
        ["unsafe-no-fsync", None, "TESTS ONLY: with --data-dir, never fsync (a power loss then "
         "loses what the node promised to keep)"],
        ["insecure-peers", None, "allow --peers or a non-loopback --listen without a cluster key "
         "(anyone who can send UDP to the port can then act as a peer)"],
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


def _resolve(host: str, family: int, name: str, resolved: dict[str, str]) -> str:
    """The IP address of an option's host, resolved once at start-up (SPEC
    §5: a name that does not resolve is a start-up error, never a silent
    failure later)."""
    from doozer.node.names import FAMILY_NAMES, resolve_host

    if is_ip(host):
        if family and (socket.AF_INET6 if is_ipv6(host) else socket.AF_INET) != family:
            raise usage.UsageError(
                f"--{name}: {host} is not an {FAMILY_NAMES[family]} address like --listen's; "
                "a node's UDP port speaks one family, so every node of a cluster must "
                "use the same one"
            )
        return host
    try:
        ip = resolve_host(host, family)
    except ValueError as e:
        raise usage.UsageError(f"--{name}: {e}") from None
    resolved[host] = ip
    return ip


#: Shortest cluster key accepted (a key is a secret, not a password).
MIN_KEY = 16


def _cluster_keys(path: str) -> tuple[bytes, ...]:
    """The keys of a key file: one per non-empty line, the sealing key first."""
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise usage.UsageError(f"cannot read --cluster-key-file: {e}") from None
    keys = tuple(line.strip() for line in lines if line.strip())
    if not keys:
        raise usage.UsageError(f"--cluster-key-file {path} holds no key")
    short = [i + 1 for i, k in enumerate(keys) if len(k) < MIN_KEY]
    if short:
        raise usage.UsageError(
            f"--cluster-key-file {path}: key {short[0]} is shorter than {MIN_KEY} bytes; "
            "make one with 'head -c 32 /dev/urandom | base64'"
        )
    return keys


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _reachable(listen: tuple[str, int], bind_ip: str, peers: list[tuple[str, int]],
               resolved: dict[str, str]) -> None:
    """A --listen that resolves to loopback cannot be reached by peers on
    other machines: a host name that /etc/hosts maps to 127.0.1.1 (as
    Debian does for the machine's own name) would otherwise start a node
    nobody can reach."""
    if is_ip(listen[0]) or not _loopback(bind_ip):
        return
    remote = [p for p in peers if not _loopback(resolved.get(p[0], p[0]))]
    if remote:
        raise usage.UsageError(
            f"--listen {format_addr(listen)} resolves to {bind_ip}, a loopback address, "
            f"but --peers names {format_addr(remote[0])} on another machine, which cannot "
            "reach it there; give --listen the address (or a name of it) the peers reach "
            "this node at"
        )


def build_config(opts: Any, environ: Any) -> Config:
    """Check the options and turn them into a :class:`Config`.

    :raises usage.UsageError: with a message saying what to change.
    """
    try:
        listen = parse_addr(opts["listen"])
    except ValueError as e:
        raise usage.UsageError(f"--listen: {e}") from None
    resolved: dict[str, str] = {}
    # A name is resolved to its IPv4 address if it has one; the node binds
    # there and advertises the name (peers look it up again if it moves).
    bind_ip = _resolve(listen[0], 0, "listen", resolved)
    if ipaddress.ip_address(bind_ip).is_unspecified:
        raise usage.UsageError(
            "--listen must name the address peers and clients reach this node at, "
            f"not {format_addr((bind_ip, listen[1]))}"
        )
    family = socket.AF_INET6 if is_ipv6(bind_ip) else socket.AF_INET
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
        _resolve(web[0], 0, "web", resolved)
    peers = []
    for peer in (opts["peers"] or "").split(","):
        if peer.strip():
            try:
                peers.append(parse_addr(peer.strip()))
            except ValueError as e:
                raise usage.UsageError(f"--peers: {e}") from None
            _resolve(peers[-1][0], family, "peers", resolved)
    _reachable(listen, bind_ip, peers, resolved)
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
    cluster_keys: tuple[bytes, ...] = ()
    if opts["cluster-key-file"]:
        cluster_keys = _cluster_keys(opts["cluster-key-file"])
    insecure = bool(opts["insecure-peers"])
    if not cluster_keys and not insecure and (peers or not _loopback(bind_ip)):
        raise usage.UsageError(
            "a node with --peers or a non-loopback --listen needs --cluster-key-file: without "
            "a key anyone who can reach its UDP port can act as a peer. Make one with "
            "'head -c 32 /dev/urandom | base64 > cluster.key' and give every node the same "
            "file (or pass --insecure-peers on a trusted network)"
        )
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
        cluster_key=cluster_keys[0] if cluster_keys else None,
        cluster_keys=cluster_keys,
        insecure_peers=insecure,
        max_pending=_number(opts, "max-pending", int, 1),
        max_pending_bytes=_number(opts, "max-pending-bytes", int, 1),
        quota_bytes=_number(opts, "quota-bytes", int, 1),
        access_log=bool(opts["access-log"]),
        resolved=resolved,
        **_data_dir(opts),
        **_client_limits(opts),
    )


def _data_dir(opts: Any) -> dict[str, Any]:
    """--data-dir and what goes with it (SPEC §8)."""
    data_dir = opts["data-dir"] or None
    if opts["unsafe-no-fsync"] and not data_dir:
        raise usage.UsageError("--unsafe-no-fsync goes with --data-dir")
    if data_dir is not None and os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise usage.UsageError(f"--data-dir {data_dir} is not a directory")
    return dict(
        data_dir=data_dir,
        fsync=not opts["unsafe-no-fsync"],
        snapshot_every=_number(opts, "snapshot-every", int, 1),
    )


def _client_limits(opts: Any) -> dict[str, Any]:
    """The options of SPEC §12 about client connections, checked."""
    from doozer.server.hosts import canonical_origin, check_allowed_host

    def listed(name: str, check: Any) -> list[str]:
        out = []
        for entry in (opts[name] or "").split(","):
            if entry.strip():
                try:
                    out.append(check(entry))
                except ValueError as e:
                    raise usage.UsageError(f"--{name}: {e}") from None
        return out

    return dict(
        max_conns=_number(opts, "max-conns", int, 1),
        max_conns_per_ip=_number(opts, "max-conns-per-ip", int, 1),
        request_timeout=_number(opts, "request-timeout", float, 0),
        max_output=_number(opts, "max-output", int, 1),
        max_outstanding=_number(opts, "max-outstanding", int, 1),
        allowed_hosts=listed("allowed-hosts", check_allowed_host),
        cors_origins=listed("cors-origin", canonical_origin),
    )


def makeService(options: Options) -> IService:
    """The twistd entry point: one node as a service."""
    from twisted.internet import reactor

    from doozer.server.service import NodeService, open_data_dir

    config = options["config"]
    # Before the reactor runs: a damaged or foreign data dir refuses to
    # start with one line, and a node's incarnation is bumped on disk before
    # anything is sent (CONSENSUS D6).
    return NodeService(config, reactor, data=open_data_dir(config))
