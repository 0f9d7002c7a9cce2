"""A node's settings, checked once at start-up (see :mod:`doozer.server.tap`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from doozer.addr import Addr


@dataclass
class Config:
    """Everything ``twistd doozer`` was told (SPEC §5)."""

    listen: Addr = ("127.0.0.1", 8046)
    web: Optional[Addr] = ("127.0.0.1", 8000)
    peers: list[Addr] = field(default_factory=list)
    cluster: str = "local"
    timeout: float = 60.0
    fill: float = 0.1
    write_timeout: float = 10.0
    hist: int = 2000
    pulse: float = 1.0
    max_value: int = 32768
    rw_secret: Optional[bytes] = None
    ro_secret: Optional[bytes] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    cluster_key: Optional[bytes] = None
    #: every key of --cluster-key-file, the sealing one (cluster_key) first
    cluster_keys: tuple[bytes, ...] = ()
    insecure_peers: bool = False
    max_pending: int = 10_000
    max_pending_bytes: int = 16 * 1024 * 1024
    quota_bytes: int = 1024 * 1024 * 1024
    #: client connections (SPEC §12; doozer/server/limits.py, doozer/server/hosts.py)
    max_conns: int = 10_000
    max_conns_per_ip: int = 1_000
    request_timeout: float = 10.0
    max_output: int = 4 * 1024 * 1024
    max_outstanding: int = 1_000
    allowed_hosts: list[str] = field(default_factory=list)
    cors_origins: list[str] = field(default_factory=list)
    access_log: bool = False
    alpha: int = 50
    #: --data-dir: keep the node's state on disk (SPEC §8); None: memory only
    data_dir: Optional[str] = None
    #: False only with --unsafe-no-fsync (tests)
    fsync: bool = True
    #: instances applied between two snapshots written to the data dir
    snapshot_every: int = 10_000
    #: the host names of --listen, --web and --peers as resolved at start-up
    #: (name -> IP address); see :mod:`doozer.node.names`
    resolved: dict[str, str] = field(default_factory=dict)

    def ip_of(self, addr: Addr) -> Addr:
        """``addr`` with its host name replaced by the IP address it resolved
        to at start-up (an address is itself)."""
        return (self.resolved.get(addr[0], addr[0]), addr[1])

    @property
    def bind(self) -> Addr:
        """Where the node listens (TCP and UDP): --listen, resolved."""
        return self.ip_of(self.listen)
