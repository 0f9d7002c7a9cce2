"""The identity file: whose data dir this is (cluster, node) and the incarnation."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional

from doozer.storage import records
from doozer.storage.errors import DamagedStorage, ForeignDataDir
from doozer.storage.files import TEMP_PREFIX, read_whole, write_atomically

#: The identity file's name in the data dir.
FILE = "identity"
VERSION = 1


@dataclass(frozen=True)
class Identity:
    """Who a data dir belongs to, and how many times its node has started.

    :param cluster: the cluster's name (``--cluster``).
    :param cluster_id: the cluster's id, made at genesis.
    :param node_id: this node's id, kept across restarts.
    :param incarnation: this start's number: 1 at the first, bumped (and on
        disk) at every start before the node sends anything (CONSENSUS D6).
    """

    cluster: str
    cluster_id: str
    node_id: str
    incarnation: int


def path_of(directory: str) -> str:
    """The identity file of the data dir ``directory``."""
    return os.path.join(directory, FILE)


def _write(directory: str, identity: Identity, fsync: bool) -> None:
    doc = {"version": VERSION, **dataclasses.asdict(identity)}
    write_atomically(path_of(directory), records.encode_whole(records.pack(doc)), fsync)


def create(directory: str, cluster: str, cluster_id: str, node_id: str, fsync: bool = True) -> Identity:
    """Write the identity of a new node's data dir, incarnation 1.

    :param fsync: False only in tests (``--unsafe-no-fsync``).
    :raises FileExistsError: when the dir has an identity already.
    """
    if os.path.exists(path_of(directory)):
        raise FileExistsError(f"{path_of(directory)} exists: load it instead")
    identity = Identity(cluster, cluster_id, node_id, 1)
    _write(directory, identity, fsync)
    return identity


def bump(directory: str, identity: Identity, fsync: bool = True) -> Identity:
    """Write ``identity`` with the next incarnation and return it; once this
    returns (with ``fsync``), the new incarnation survives any crash."""
    bumped = dataclasses.replace(identity, incarnation=identity.incarnation + 1)
    _write(directory, bumped, fsync)
    return bumped


def _parse(doc: Any, path: str) -> Identity:
    """The identity in a decoded identity file."""
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        version = doc.get("version") if isinstance(doc, dict) else None
        raise DamagedStorage(path, f"not an identity file of version {VERSION} (version {version!r})")
    def text(name: str) -> str:
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise DamagedStorage(path, f"identity field {name!r} is {value!r}")
        return value

    incarnation = doc.get("incarnation")
    if type(incarnation) is not int or incarnation < 1:
        raise DamagedStorage(path, f"identity field 'incarnation' is {incarnation!r}")
    return Identity(text("cluster"), text("cluster_id"), text("node_id"), incarnation)


def load(directory: str, cluster: Optional[str] = None, cluster_id: Optional[str] = None,
         node_id: Optional[str] = None) -> Optional[Identity]:
    """The identity of the data dir ``directory``, checked against what the
    node was told; None when the dir is new (empty).

    :param cluster: the cluster name the node was started with, if checked.
    :param cluster_id: the cluster id the node expects, if it knows one.
    :param node_id: the node id the node expects, if it knows one.
    :raises ForeignDataDir: when the dir belongs to another cluster or node.
    :raises DamagedStorage: when the identity file is damaged, or missing
        from a dir that holds other files.
    """
    path = path_of(directory)
    try:
        data = read_whole(path)
    except FileNotFoundError:
        others = sorted(n for n in os.listdir(directory) if not n.startswith(TEMP_PREFIX))
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise DamagedStorage(path, f"missing, but the data dir holds {shown}") from None
        return None
    try:
        doc = records.unpack(records.decode_whole(data, path))
    except ValueError as e:
        raise DamagedStorage(path, str(e)) from None
    identity = _parse(doc, path)
    expected = {"cluster": cluster, "cluster_id": cluster_id, "node_id": node_id}
    for name, want in expected.items():
        if want is not None and getattr(identity, name) != want:
            raise ForeignDataDir(
                directory,
                f"it belongs to cluster {identity.cluster!r} (id {identity.cluster_id}) as node "
                f"{identity.node_id!r}, but this node's {name} is {want!r}",
            )
    return identity
