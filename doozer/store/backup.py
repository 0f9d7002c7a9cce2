"""Backup files: one consistent snapshot of the store at one rev, checksummed.

A backup is what ``GET /v1/backup`` sends and ``doozer backup FILE`` saves::

    MAGIC                      18 bytes, b"\\x89doozer-backup\\r\\n\\x1a\\n"
    header length              4 bytes, unsigned big-endian
    header                     a msgpack map (below)
    body                       the sections the header names, in order
    SHA-256                    32 bytes: the digest of every byte before it

The header says ``format`` (``"doozer-backup"``), ``version`` (1), the
``cluster`` name and ``cluster_id``, the ``node`` that made it, ``created``
(Unix time), the backup's ``rev``, the ``oldest`` rev of its history window,
the node's ``hist``, the number of ``files`` at ``rev``, and ``sections``.
Version 1 has one section, ``"store"``: a store snapshot without the
de-duplication record (:func:`doozer.store.snapshot.dump` with
``keys=False``: the tree at ``oldest`` and every change since, so the
files at ``rev`` with their revs and the history window). Leases (SPEC §9)
are files under ``/ctl/lease`` and so travel in the store section; state of
theirs that is not a file would be a further section, and a reader refuses
sections it does not know rather than drop them.

The digest is last so that a backup can be streamed as it is packed; the
magic's ``\\x89``, CR-LF and ``\\x1a`` catch text-mode copies. Every
truncation, every flipped bit and anything appended make :func:`decode`
raise :class:`BackupError`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import msgpack

from doozer.store import snapshot
from doozer.store.tree import Store

MAGIC = b"\x89doozer-backup\r\n\x1a\n"
FORMAT = "doozer-backup"
VERSION = 1
SECTIONS = ["store"]
#: Bytes of the SHA-256 digest that ends a backup.
DIGEST_SIZE = 32
#: :func:`chunks` yields pieces of about this many bytes.
CHUNK_SIZE = 64 * 1024
#: The largest header :func:`decode` reads (a header is a few hundred bytes).
MAX_HEADER = 64 * 1024
_LENGTH = struct.Struct(">I")


class BackupError(ValueError):
    """Bytes that are not a whole, undamaged doozer backup this version reads."""


@dataclass(frozen=True)
class BackupContents:
    """What a backup holds: its header's facts and the store it saved."""

    version: int
    cluster: str
    cluster_id: str
    node: str
    created: float
    rev: int
    oldest: int
    files: int
    store: Store


def chunks(
    store: Store, *, cluster: str, cluster_id: str = "", node: str = "", created: float = 0.0
) -> Iterator[bytes]:
    """A backup of ``store`` as it is now, in pieces of about :data:`CHUNK_SIZE`.

    The store is captured when this is called (one rev); the packing and
    hashing happen as the pieces are asked for, so a server can send them
    over many reactor turns while it goes on applying writes.
    """
    header = msgpack.packb(
        {
            "format": FORMAT,
            "version": VERSION,
            "cluster": cluster,
            "cluster_id": cluster_id,
            "node": node,
            "created": created,
            "rev": store.rev,
            "oldest": store.oldest,
            "hist": store.hist,
            "files": store.file_count,
            "sections": SECTIONS,
        },
        use_bin_type=True,
    )
    body = snapshot.dump_chunks(store, keys=False)
    return _hashed(MAGIC + _LENGTH.pack(len(header)) + header, body)


def _hashed(opening: bytes, body: Iterator[bytes]) -> Iterator[bytes]:
    digest = hashlib.sha256()
    pending = [opening]
    size = len(opening)
    for piece in body:
        pending.append(piece)
        size += len(piece)
        if size >= CHUNK_SIZE:
            out = b"".join(pending)
            digest.update(out)
            yield out
            pending, size = [], 0
    out = b"".join(pending)
    digest.update(out)
    yield out + digest.digest()


def encode(
    store: Store, *, cluster: str, cluster_id: str = "", node: str = "", created: float = 0.0
) -> bytes:
    """A backup of ``store`` as it is now, in one piece (see :func:`chunks`)."""
    return b"".join(
        chunks(store, cluster=cluster, cluster_id=cluster_id, node=node, created=created)
    )


def decode(data: bytes) -> BackupContents:
    """The contents of a backup, checked whole before anything is believed.

    :raises BackupError: saying what is wrong: not a backup, truncated,
        damaged (checksum), or of a format version this doozer does not read.
    """
    opening = len(MAGIC) + _LENGTH.size
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise BackupError(f"truncated: {len(data)} bytes, less than a backup's header")
        raise BackupError("not a doozer backup: it does not start with the backup marker")
    if len(data) < opening + DIGEST_SIZE:
        raise BackupError(f"truncated: {len(data)} bytes, less than a backup's header")
    view = memoryview(data)
    if hashlib.sha256(view[:-DIGEST_SIZE]).digest() != data[-DIGEST_SIZE:]:
        raise BackupError(
            f"damaged or truncated: the SHA-256 of its {len(data)} bytes does not match "
            "the one it ends with"
        )
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    if length > MAX_HEADER or opening + length > len(data) - DIGEST_SIZE:
        raise BackupError(f"bad header length {length}")
    header = _header(view[opening : opening + length])
    try:
        store = snapshot.load(view[opening + length : -DIGEST_SIZE], hist=header["hist"])
    except ValueError as e:
        raise BackupError(f"the store section is not readable: {e}") from None
    if (store.rev, store.oldest) != (header["rev"], header["oldest"]):
        raise BackupError(
            f"the header says rev {header['rev']} (oldest {header['oldest']}), the store "
            f"holds rev {store.rev} (oldest {store.oldest})"
        )
    return BackupContents(
        version=header["version"],
        cluster=header["cluster"],
        cluster_id=header["cluster_id"],
        node=header["node"],
        created=header["created"],
        rev=header["rev"],
        oldest=header["oldest"],
        files=header["files"],
        store=store,
    )


_HEADER_TYPES: dict[str, Any] = {
    "format": str, "version": int, "cluster": str, "cluster_id": str, "node": str,
    "created": (int, float), "rev": int, "oldest": int, "hist": int, "files": int,
    "sections": list,
}


def _header(raw: memoryview) -> dict[str, Any]:
    """The header's fields, each of its type, of a version this doozer reads."""
    try:
        header: Optional[Any] = msgpack.unpackb(raw, raw=False)
    except Exception as e:  # msgpack raises several unrelated types
        raise BackupError(f"the header is not readable: {e}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError("not a doozer backup: its header names another format")
    version = header.get("version")
    if version != VERSION:
        raise BackupError(
            f"backup format version {version!r}; this doozer reads version {VERSION} "
            "(use the doozer that wrote it, or a newer one)"
        )
    for name, kind in _HEADER_TYPES.items():
        if not isinstance(header.get(name), kind) or isinstance(header.get(name), bool):
            raise BackupError(f"the header's {name!r} is missing or of the wrong type")
    if header["sections"] != SECTIONS:
        raise BackupError(
            f"the backup holds sections {header['sections']!r}; this doozer reads only {SECTIONS!r}"
        )
    if header["hist"] < 1:
        raise BackupError("the header's 'hist' is below 1")
    return header
