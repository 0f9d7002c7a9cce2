"""Applying the lease verbs to a store (SPEC §9, CONSENSUS.md §L1, §L4).

- ``GRANT(id, ttl)`` takes a rev: writes ``/ctl/lease/<id>`` (``{"ttl": S}``)
  and starts the lease with its basis at the grant's log position.
- ``REVOKE(id)`` takes a rev: deletes the lease's files and its
  ``/ctl/lease/<id>`` at that one rev (``NOENT`` when it is gone).
- ``RENEW(ids)`` takes **no** rev and changes no file: each lease still
  there gets the RENEW's position as its new basis; the outcome names the
  ones that were gone (their keepalives answer ``NOENT``).
- ``EXPIRE(id, basis)`` acts only when the lease is there and its basis is
  still ``basis`` (no renewal was ordered after the one its proposer timed
  from): then, like ``REVOKE``, at one rev; else it changes nothing and
  takes no rev.

A position is ``(seqn, index of the item in its instance's batch)``: the
same on every node, and later positions are later in the log.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Optional

from doozer.errors import DoozerError
from doozer.store import mutation as mut
from doozer.store.leases import LEASE_DIR, LEASE_ID, MAX_TTL, MIN_TTL, Position
from doozer.store.types import Outcome

if TYPE_CHECKING:  # the verbs change a store; typing only
    from doozer.store.tree import Store

#: The kinds that take a rev only when they change something.
NO_REV_KINDS = frozenset((mut.RENEW, mut.EXPIRE))


def lease_path(lease_id: str) -> str:
    return f"{LEASE_DIR}/{lease_id}"


def grant(store: "Store", m: mut.Mutation, rev: int, pos: Position) -> Optional[DoozerError]:
    if not LEASE_ID.match(m.lease):
        return DoozerError("BAD_ARG", f"{m.lease!r} is not a lease id")
    if not MIN_TTL <= m.ttl <= MAX_TTL:
        return DoozerError("BAD_ARG", f"ttl {m.ttl} is not within {MIN_TTL}-{MAX_TTL} seconds")
    if store.leases.get(m.lease) is not None:
        return DoozerError("OTHER", f"lease {m.lease} exists already")
    path = lease_path(m.lease)
    store._set(path, json.dumps({"ttl": m.ttl}).encode(), rev, store._files.get(path))
    store.leases.grant(m.lease, m.ttl, pos)
    return None


def revoke(store: "Store", m: mut.Mutation, rev: int) -> Optional[DoozerError]:
    if store.leases.get(m.lease) is None:
        return DoozerError("NOENT", f"lease {m.lease} does not exist", lease=m.lease)
    end(store, m.lease, rev)
    return None


def end(store: "Store", lease_id: str, rev: int) -> None:
    """Delete the lease's files and its ``/ctl/lease/<id>`` at ``rev``."""
    for path in store.leases.end(lease_id) + [lease_path(lease_id)]:
        old = store._files.get(path)
        if old is not None:
            store._delete(path, rev, old)


def renew(store: "Store", m: mut.Mutation, pos: Position) -> Outcome:
    gone = tuple(i for i in m.leases if not store.leases.renew(i, pos))
    return Outcome(store.rev, m.key, None, norev=True, gone=gone)


def expire(store: "Store", m: mut.Mutation) -> Outcome:
    lease = store.leases.get(m.lease)
    if lease is None or lease.basis != m.basis:
        # gone already, or renewed after the basis its proposer timed from
        return Outcome(store.rev, m.key, None, norev=True, gone=(m.lease,))
    store.rev += 1
    end(store, m.lease, store.rev)
    return Outcome(store.rev, m.key, None)


def attach_refusal(store: "Store", path: str, lease_id: str) -> Optional[DoozerError]:
    """Why a SET of ``path`` with ``lease_id`` cannot attach it."""
    if path.startswith("/ctl/"):
        return DoozerError("FORBIDDEN", f"{path}: files under /ctl are not attached to leases")
    if store.leases.get(lease_id) is None:
        return DoozerError("NOENT", f"lease {lease_id} does not exist", lease=lease_id)
    return None
