"""A node's log in its data dir: the payloads of its records (one pump's
consensus records, a msgpack list of :func:`~doozer.consensus.durable.encode_record`
tuples), their rewrite at a compaction, and the segmented log that refuses
to write after a failed write (:mod:`doozer.node.datadir`)."""

from __future__ import annotations

from typing import Optional

from doozer.consensus.durable import DecidedRec, Record, decode_record, encode_record
from doozer.storage import records, segments
from doozer.storage.errors import DamagedStorage, StorageError

#: Bytes of encoded records in one payload when the log is compacted.
COMPACT_CHUNK = 256 * 1024


def encode_records(recs: list[Record]) -> bytes:
    """One payload of the log: the records of one pump."""
    return records.pack([list(encode_record(r)) for r in recs])


def _encoded_size(record: Record) -> int:
    """About the bytes ``record`` takes in a payload (at least), to cut
    rewritten records into payloads that fit a record of the log."""
    if type(record) is DecidedRec:
        return 32 + sum(len(item) + 5 for item in record.items)
    return 64 + len(getattr(record, "value", b""))


def chunk_records(recs: list[Record]) -> list[list[Record]]:
    """``recs`` cut into runs of about COMPACT_CHUNK encoded bytes each."""
    chunks: list[list[Record]] = []
    chunk: list[Record] = []
    size = 0
    for record in recs:
        chunk.append(record)
        size += _encoded_size(record)
        if size >= COMPACT_CHUNK:
            chunks.append(chunk)
            chunk, size = [], 0
    if chunk:
        chunks.append(chunk)
    return chunks


def rewrite_payloads(kept: list[Record]) -> list[bytes]:
    """``kept`` as payloads of about COMPACT_CHUNK bytes each, for the log's
    rewrite at a compaction (each must fit one record of the log)."""
    return [encode_records(chunk) for chunk in chunk_records(kept)]


def decode_payload(payload: bytes, path: str) -> list[Record]:
    try:
        return [decode_record(r) for r in records.unpack(payload)]
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise DamagedStorage(path, f"a log record that holds no consensus records ({e})") from None


class GuardedLog(segments.SegmentedLog):
    """The segmented log, which refuses to write after a failed write: a
    partial record must stay the last one, to be cut as torn at the next
    start rather than found in the middle (damage)."""

    broken: Optional[BaseException] = None

    def _refuse_if_broken(self) -> None:
        if self.broken is not None:
            raise StorageError(f"{self.path}: an earlier write failed ({self.broken})")

    def append(self, payload: bytes) -> None:
        self._refuse_if_broken()
        try:
            super().append(payload)
        except BaseException as e:
            self.broken = e
            raise

    def plan(self, payload: bytes) -> Optional[tuple[int, bytes, int]]:
        self._refuse_if_broken()
        return super().plan(payload)

    def sync(self) -> None:
        self._refuse_if_broken()
        try:
            super().sync()
        except BaseException as e:
            self.broken = e
            raise
