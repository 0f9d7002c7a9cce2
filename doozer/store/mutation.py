"""Mutations: the only thing that changes the store.

A client write becomes a :class:`Mutation`, is encoded to bytes, proposed to
consensus as one item of a batch, decided, and applied by every node in the
same order. ``(origin, request)`` identifies the write so that its proposer
recognises its own result and so that applying de-duplicates retries.

Every mutation carries a **deadline** (``until``): the last consensus
instance in which it may be decided. Proposers never put it in a later
instance and applying refuses it there, so the de-duplication record
(:mod:`doozer.store.dedup`) can forget its key once that instance is applied.

Wire form (msgpack): ``[kind, origin, request, path, value, rev, until,
compare]``, ``compare`` a list of ``[path, rev]`` preconditions that must
hold too (e.g. a member's removal that fails once the member was heard from),
then, only when any is set, a ninth field: a map of the extras of leases and
transactions (SPEC §9-§10, CONSENSUS.md §L): ``"l"`` the lease (of a SET:
the lease it attaches the file to; of GRANT, REVOKE, EXPIRE: the lease it
acts on), ``"t"`` a GRANT's ttl, ``"r"`` a RENEW's lease ids, ``"b"`` an
EXPIRE's basis ``[seqn, index]``, ``"o"`` a TXN's ops ``[[kind, path,
value, lease], ...]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

SET = 1
DEL = 2
NOP = 3
#: compares and ops applied at one rev or not at all (SPEC §10)
TXN = 4
#: lease verbs (CONSENSUS.md §L1)
GRANT = 5
REVOKE = 6
RENEW = 7
EXPIRE = 8

_KINDS = (SET, DEL, NOP, TXN, GRANT, REVOKE, RENEW, EXPIRE)

#: The "clobber" precondition: write whatever the file's rev.
CLOBBER = -1

#: Most ``compare`` preconditions one mutation may carry.
MAX_COMPARE = 128
#: Most ops of one transaction (SPEC §10).
MAX_OPS = 128
#: Most leases renewed by one RENEW (a proposal fits a datagram anyway).
MAX_RENEW = 4096


class MalformedMutation(ValueError):
    """Bytes that do not decode to a mutation."""


@dataclass(frozen=True)
class Op:
    """One op of a transaction: a SET (with ``value``, maybe ``lease``) or a DEL."""

    kind: int
    path: str
    value: bytes = b""
    lease: str = ""


@dataclass(frozen=True)
class Mutation:
    """One change proposed to the store.

    :param kind: :data:`SET`, :data:`DEL`, :data:`NOP`, :data:`TXN` or a
        lease verb (:data:`GRANT`, :data:`REVOKE`, :data:`RENEW`,
        :data:`EXPIRE`).
    :param origin: id of the node that proposed it.
    :param request: that node's request number, unique per origin.
    :param path: the file's path (empty for a NOP).
    :param value: the new body (SET only).
    :param rev: the precondition: -1 clobber, 0 must not exist, R > 0 the
        file's rev must be <= R.
    :param until: the deadline: the last instance (seqn) in which this
        mutation may be decided; applying it later refuses it.
    :param compare: further ``(path, rev)`` preconditions, each like ``rev``.
    :param lease: a SET's lease (attaches the file), or the lease a GRANT,
        REVOKE or EXPIRE acts on.
    :param ttl: a GRANT's ttl in seconds.
    :param leases: the leases a RENEW renews.
    :param basis: an EXPIRE's basis: the position ``(seqn, index)`` of the
        renewal its proposer timed from (CONSENSUS.md §L3-L4).
    :param ops: a TXN's ops, applied in order at one rev.
    """

    kind: int
    origin: str
    request: int
    path: str = ""
    value: bytes = b""
    rev: int = CLOBBER
    until: int = field(default=0, kw_only=True)
    compare: tuple[tuple[str, int], ...] = field(default=(), kw_only=True)
    lease: str = field(default="", kw_only=True)
    ttl: int = field(default=0, kw_only=True)
    leases: tuple[str, ...] = field(default=(), kw_only=True)
    basis: tuple[int, int] = field(default=(0, 0), kw_only=True)
    ops: tuple[Op, ...] = field(default=(), kw_only=True)

    @property
    def key(self) -> tuple[str, int]:
        """The id used to recognise and de-duplicate this write."""
        return (self.origin, self.request)

    def encode(self) -> bytes:
        """The mutation's bytes, as proposed to consensus."""
        fields: list[Any] = [
            self.kind,
            self.origin,
            self.request,
            self.path,
            self.value,
            self.rev,
            self.until,
            [list(c) for c in self.compare],
        ]
        extras: dict[str, object] = {}
        if self.lease:
            extras["l"] = self.lease
        if self.ttl:
            extras["t"] = self.ttl
        if self.leases:
            extras["r"] = list(self.leases)
        if self.basis != (0, 0):
            extras["b"] = list(self.basis)
        if self.ops:
            extras["o"] = [[o.kind, o.path, o.value, o.lease] for o in self.ops]
        if extras:
            fields.append(extras)
        data: bytes = msgpack.packb(fields, use_bin_type=True)
        return data

    @classmethod
    def decode(cls, data: bytes) -> "Mutation":
        """Parse bytes made by :meth:`encode`.

        :raises MalformedMutation: for anything else.
        """
        try:
            fields = msgpack.unpackb(data, raw=False)
        except Exception as e:  # msgpack raises several unrelated types
            raise MalformedMutation(f"undecodable mutation: {e}") from None
        if not isinstance(fields, list) or len(fields) not in (8, 9):
            raise MalformedMutation("a mutation is a list of eight or nine fields")
        kind, origin, request, path, value, rev, until, compare = fields[:8]
        if (
            kind not in _KINDS
            or not isinstance(origin, str)
            or type(request) is not int
            or not isinstance(path, str)
            or not isinstance(value, bytes)
            or type(rev) is not int
            or type(until) is not int
            or not isinstance(compare, list)
            or len(compare) > MAX_COMPARE
        ):
            raise MalformedMutation("a mutation field has the wrong type")
        checks = []
        for c in compare:
            if (
                not isinstance(c, list)
                or len(c) != 2
                or not isinstance(c[0], str)
                or type(c[1]) is not int
            ):
                raise MalformedMutation("a compare is a [path, rev] pair")
            checks.append((c[0], c[1]))
        extras = _extras(fields[8]) if len(fields) == 9 else {}
        return cls(kind, origin, request, path, value, rev, until=until, compare=tuple(checks),
                   **extras)


def _extras(doc: object) -> dict[str, Any]:
    """The keyword arguments the ninth field holds.

    :raises MalformedMutation: for a field that is not one.
    """
    if not isinstance(doc, dict) or not doc or not set(doc) <= {"l", "t", "r", "b", "o"}:
        raise MalformedMutation("a mutation's extras are a map of l, t, r, b, o")
    extras: dict[str, Any] = {}
    lease = doc.get("l", "")
    ttl = doc.get("t", 0)
    if not isinstance(lease, str) or type(ttl) is not int:
        raise MalformedMutation("a mutation's lease is a string and its ttl an integer")
    extras["lease"], extras["ttl"] = lease, ttl
    renewed = doc.get("r", [])
    if (not isinstance(renewed, list) or len(renewed) > MAX_RENEW
            or not all(isinstance(i, str) for i in renewed)):
        raise MalformedMutation("a RENEW's leases are a list of strings")
    extras["leases"] = tuple(renewed)
    basis = doc.get("b", [0, 0])
    if not isinstance(basis, list) or len(basis) != 2 or not all(type(b) is int for b in basis):
        raise MalformedMutation("an EXPIRE's basis is [seqn, index]")
    extras["basis"] = (basis[0], basis[1])
    ops = doc.get("o", [])
    if not isinstance(ops, list) or len(ops) > MAX_OPS:
        raise MalformedMutation(f"a TXN has a list of at most {MAX_OPS} ops")
    made = []
    for o in ops:
        if (
            not isinstance(o, list)
            or len(o) != 4
            or o[0] not in (SET, DEL)
            or not isinstance(o[1], str)
            or not isinstance(o[2], bytes)
            or not isinstance(o[3], str)
        ):
            raise MalformedMutation("a TXN op is [kind, path, value, lease]")
        made.append(Op(o[0], o[1], o[2], o[3]))
    extras["ops"] = tuple(made)
    return extras


def set_(
    origin: str, request: int, path: str, value: bytes, rev: int = CLOBBER, *, until: int
) -> Mutation:
    """A SET of ``path`` to ``value`` under precondition ``rev``, to be
    decided by instance ``until``."""
    return Mutation(SET, origin, request, path, value, rev, until=until)


def delete(origin: str, request: int, path: str, rev: int = CLOBBER, *, until: int) -> Mutation:
    """A DEL of ``path`` under precondition ``rev``, decided by ``until``."""
    return Mutation(DEL, origin, request, path, b"", rev, until=until)
