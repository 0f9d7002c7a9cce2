"""The lease table of one store (SPEC §9, CONSENSUS.md §L).

A lease is store state, changed only by applying decided mutations, so
every node holds the same table: its ``ttl``, its **basis** (the log
position ``(seqn, index)`` of the grant or of the last renewal applied) and
the files attached to it. The file ``/ctl/lease/<id>`` (written by the
store at grant, deleted when the lease ends) shows it to readers; the
attachments are kept here, not in files, and travel in snapshots.

What no two nodes share is *when* each applied a basis: that is each
node's own monotonic time, kept by the node's expiry timers
(:mod:`doozer.node.leases`), which learn of new bases from
:meth:`Leases.take_changes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

#: Where leases show in the store (readable, not writable by clients).
LEASE_DIR = "/ctl/lease"
#: A lease id: what the granting node makes (16 base32 characters), or
#: what a client may name; short, and safe as one path component.
LEASE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: The bounds of a lease's ttl in seconds (SPEC §9).
MIN_TTL, MAX_TTL = 1, 3600

#: A position in the log: ``(seqn, index of the item in its batch)``.
Position = tuple[int, int]


@dataclass
class Lease:
    """One lease as the log made it."""

    id: str
    ttl: int
    basis: Position
    files: set[str] = field(default_factory=set)


class Leases:
    """Every lease of a store, and which file is attached to which."""

    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}
        self._owner: dict[str, str] = {}  # path -> lease id
        #: ``(id, basis or None)`` since the last :meth:`take_changes`: a
        #: grant or renewal (its new basis), or an end (None)
        self._changes: list[tuple[str, Optional[Position]]] = []

    def __len__(self) -> int:
        return len(self._leases)

    def __iter__(self) -> Iterator[Lease]:
        return iter(self._leases.values())

    def get(self, lease_id: str) -> Optional[Lease]:
        return self._leases.get(lease_id)

    def lease_of(self, path: str) -> Optional[str]:
        """The id of the lease ``path`` is attached to, if any."""
        return self._owner.get(path)

    def grant(self, lease_id: str, ttl: int, basis: Position) -> None:
        self._leases[lease_id] = Lease(lease_id, ttl, basis)
        self._changes.append((lease_id, basis))

    def renew(self, lease_id: str, basis: Position) -> bool:
        """Move the lease's basis to ``basis``; False when it is gone."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return False
        lease.basis = basis
        self._changes.append((lease_id, basis))
        return True

    def end(self, lease_id: str) -> list[str]:
        """Forget the lease; returns its files (sorted), which the store
        deletes at the same rev."""
        lease = self._leases.pop(lease_id)
        for path in lease.files:
            del self._owner[path]
        self._changes.append((lease_id, None))
        return sorted(lease.files)

    def attach(self, path: str, lease_id: Optional[str]) -> None:
        """``path`` was written: attached to ``lease_id``, or to none."""
        old = self._owner.get(path)
        if old == lease_id:
            return
        if old is not None:
            self._leases[old].files.discard(path)
            del self._owner[path]
        if lease_id is not None:
            self._leases[lease_id].files.add(path)
            self._owner[path] = lease_id

    def detach(self, path: str) -> None:
        """``path`` was deleted."""
        self.attach(path, None)

    def take_changes(self) -> list[tuple[str, Optional[Position]]]:
        changes, self._changes = self._changes, []
        return changes

    # -- snapshots ------------------------------------------------------------

    def dump(self) -> list[list[Any]]:
        """``[[id, ttl, seqn, index, [paths]], ...]``, for a snapshot."""
        return [
            [lease.id, lease.ttl, lease.basis[0], lease.basis[1], sorted(lease.files)]
            for lease in self._leases.values()
        ]

    @classmethod
    def load(cls, rows: Any, files: Any) -> "Leases":
        """The table :meth:`dump` saved, checked against the store's files
        (``files``: a container of the store's file paths).

        :raises ValueError: for rows that are not a lease table.
        """
        table = cls()
        if not isinstance(rows, list):
            raise ValueError("leases: not a list")
        for row in rows:
            if not isinstance(row, list) or len(row) != 5:
                raise ValueError("leases: a row is [id, ttl, seqn, index, paths]")
            lease_id, ttl, seqn, index, paths = row
            if (not isinstance(lease_id, str) or not LEASE_ID.match(lease_id)
                    or lease_id in table._leases
                    or type(ttl) is not int or not MIN_TTL <= ttl <= MAX_TTL
                    or type(seqn) is not int or type(index) is not int
                    or not isinstance(paths, list)):
                raise ValueError(f"leases: a bad row for {lease_id!r}")
            table._leases[lease_id] = Lease(lease_id, ttl, (seqn, index))
            for path in paths:
                if not isinstance(path, str) or path not in files or path in table._owner:
                    raise ValueError(f"leases: {path!r} of {lease_id} is no file or has two leases")
                table.attach(path, lease_id)
        table._changes = []
        return table
