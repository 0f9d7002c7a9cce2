"""Mutations: the only thing that changes the store.

A client write becomes a :class:`Mutation`, is encoded to bytes, proposed to
consensus as one item of a batch, decided, and applied by every node in the
same order. ``(origin, request)`` identifies the write so that its proposer
recognises its own result and so that applying de-duplicates retries.

Wire form (msgpack): ``[kind, origin, request, path, value, rev]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

SET = 1
DEL = 2
NOP = 3

_KINDS = (SET, DEL, NOP)

#: The "clobber" precondition: write whatever the file's rev.
CLOBBER = -1


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
    """

    kind: int
    origin: str
    request: int
    path: str = ""
    value: bytes = b""
    rev: int = CLOBBER

    @property
    def key(self) -> tuple[str, int]:
        """The id used to recognise and de-duplicate this write."""
        return (self.origin, self.request)

    def encode(self) -> bytes:
        """The mutation's bytes, as proposed to consensus."""
        return msgpack.packb(
            [self.kind, self.origin, self.request, self.path, self.value, self.rev],
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> "Mutation":
        """Parse bytes made by :meth:`encode`.

        :raises MalformedMutation: for anything else.
        """
        try:
            fields = msgpack.unpackb(data, raw=False)
        except Exception as e:  # msgpack raises several unrelated types
            raise MalformedMutation(f"undecodable mutation: {e}") from None
        if not isinstance(fields, list) or len(fields) != 6:
            raise MalformedMutation("a mutation is a list of six fields")
        kind, origin, request, path, value, rev = fields
        if (
            kind not in _KINDS
            or not isinstance(origin, str)
            or not isinstance(request, int)
            or not isinstance(path, str)
            or not isinstance(value, bytes)
            or not isinstance(rev, int)
        ):
            raise MalformedMutation("a mutation field has the wrong type")
        return cls(kind, origin, request, path, value, rev)


def set_(origin: str, request: int, path: str, value: bytes, rev: int = CLOBBER) -> Mutation:
    """A SET of ``path`` to ``value`` under precondition ``rev``."""
    return Mutation(SET, origin, request, path, value, rev)


def delete(origin: str, request: int, path: str, rev: int = CLOBBER) -> Mutation:
    """A DEL of ``path`` under precondition ``rev``."""
    return Mutation(DEL, origin, request, path, b"", rev)


def nop(origin: str, request: int) -> Mutation:
    """A no-op that still takes a rev (SPEC's ``POST /v1/nop``)."""
    return Mutation(NOP, origin, request)


def encode_batch(items: list[bytes]) -> bytes:
    """The value of one consensus instance: a list of encoded mutations."""
    return msgpack.packb(items, use_bin_type=True)


def decode_batch(data: bytes) -> list[bytes]:
    """Inverse of :func:`encode_batch`.

    :raises MalformedMutation: when ``data`` is not a list of byte strings.
    """
    try:
        items = msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise MalformedMutation(f"undecodable batch: {e}") from None
    if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
        raise MalformedMutation("a batch is a list of byte strings")
    return items
