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
hold too (e.g. a member's removal that fails once the member was heard from).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

SET = 1
DEL = 2
NOP = 3

_KINDS = (SET, DEL, NOP)

#: The "clobber" precondition: write whatever the file's rev.
CLOBBER = -1

#: Most ``compare`` preconditions one mutation may carry.
MAX_COMPARE = 128


class MalformedMutation(ValueError):
    """Bytes that do not decode to a mutation."""


@dataclass(frozen=True)
class Mutation:
    """One change proposed to the store.

    :param kind: :data:`SET`, :data:`DEL` or :data:`NOP`.
    :param origin: id of the node that proposed it.
    :param request: that node's request number, unique per origin.
    :param path: the file's path (empty for a NOP).
    :param value: the new body (SET only).
    :param rev: the precondition: -1 clobber, 0 must not exist, R > 0 the
        file's rev must be <= R.
    :param until: the deadline: the last instance (seqn) in which this
        mutation may be decided; applying it later refuses it.
    :param compare: further ``(path, rev)`` preconditions, each like ``rev``.
    """

    kind: int
    origin: str
    request: int
    path: str = ""
    value: bytes = b""
    rev: int = CLOBBER
    until: int = field(default=0, kw_only=True)
    compare: tuple[tuple[str, int], ...] = field(default=(), kw_only=True)

    @property
    def key(self) -> tuple[str, int]:
        """The id used to recognise and de-duplicate this write."""
        return (self.origin, self.request)

    def encode(self) -> bytes:
        """The mutation's bytes, as proposed to consensus."""
        data: bytes = msgpack.packb(
            [
                self.kind,
                self.origin,
                self.request,
                self.path,
                self.value,
                self.rev,
                self.until,
                [list(c) for c in self.compare],
            ],
            use_bin_type=True,
        )
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
        if not isinstance(fields, list) or len(fields) != 8:
            raise MalformedMutation("a mutation is a list of eight fields")
        kind, origin, request, path, value, rev, until, compare = fields
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
        return cls(kind, origin, request, path, value, rev, until=until, compare=tuple(checks))


def set_(
    origin: str, request: int, path: str, value: bytes, rev: int = CLOBBER, *, until: int
) -> Mutation:
    """A SET of ``path`` to ``value`` under precondition ``rev``, to be
    decided by instance ``until``."""
    return Mutation(SET, origin, request, path, value, rev, until=until)


def delete(origin: str, request: int, path: str, rev: int = CLOBBER, *, until: int) -> Mutation:
    """A DEL of ``path`` under precondition ``rev``, decided by ``until``."""
    return Mutation(DEL, origin, request, path, b"", rev, until=until)
