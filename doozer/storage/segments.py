"""The log as numbered segment files: rotated by size, whole old ones deleted."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

from doozer.storage import records
from doozer.storage.errors import DamagedStorage
from doozer.storage.files import fsync_directory, read_whole

#: A segment's name: ``log-`` and its number, from 1, without gaps.
NAME = re.compile(r"^log-(\d{8})$")

#: Segments are rotated once they would grow past this.
SEGMENT_BYTES = 64 << 20
#: Bytes allocated at a time ahead of the records of the segment being
#: appended to (when syncing): its syncs then rarely commit a new size.
PREALLOCATE = 4 << 20


def segment_name(number: int) -> str:
    """The file name of segment ``number``."""
    return f"log-{number:08d}"


def numbers(directory: str) -> list[int]:
    """The numbers of the segments in ``directory``, in order."""
    found = (NAME.match(name) for name in os.listdir(directory))
    return sorted(int(m.group(1)) for m in found if m)


@dataclass(frozen=True)
class Segment:
    """One segment as read back.

    :param number: its number.
    :param path: its file.
    :param contents: its good records, salt and end.
    """

    number: int
    path: str
    contents: records.Contents

    @property
    def records(self) -> list[bytes]:
        """Its good records, in order."""
        return self.contents.records


def recover(directory: str, fsync: bool = True,
            max_record: int = records.MAX_RECORD) -> tuple[list[Segment], Optional[records.Torn]]:
    """Every segment's records, in order, and the torn tail cut from the last.

    Only the last segment may end in a torn record: a segment is synced
    before the next one is made, so damage anywhere else is damage. Only
    the last may end in preallocated space (zeros): a full segment is cut
    to its last record, durably, before the next one is made.

    :raises DamagedStorage: on a gap in the numbers or damage in any segment.
    """
    found = numbers(directory)
    for before, after in zip(found, found[1:]):
        if after != before + 1:
            raise DamagedStorage(os.path.join(directory, segment_name(before + 1)),
                                 f"missing between {segment_name(before)} and {segment_name(after)}")
    segments = []
    torn = None
    for number in found:
        path = os.path.join(directory, segment_name(number))
        if number == found[-1]:
            contents = records.recover(path, fsync, max_record, zero_tail=True)
            torn = contents.torn
        else:
            contents = records.scan(read_whole(path), path, False, max_record)
        segments.append(Segment(number, path, contents))
    return segments, torn


class SegmentedLog:
    """Appends to the last segment, starting a new one when it is full.

    A sink for :class:`doozer.storage.writer.Writer`: blocking, so used only
    on the writer's thread (:meth:`Writer.call` for :meth:`drop_before`).

    :param directory: where the segments are.
    :param segments: what :func:`recover` returned (empty for a new log).
    :param fsync: False only in tests (``--unsafe-no-fsync``).
    :param segment_bytes: the size past which a new segment is started.
    :param max_record: the largest payload.
    :param preallocate: bytes allocated at a time ahead of the records
        (see :meth:`records.Appender.open`); by default
        :data:`PREALLOCATE` when syncing, else none (it only makes syncs
        cheaper).
    """

    def __init__(self, directory: str, segments: list[Segment], fsync: bool = True,
                 segment_bytes: int = SEGMENT_BYTES, max_record: int = records.MAX_RECORD,
                 preallocate: Optional[int] = None) -> None:
        self.directory = directory
        self._fsync = fsync
        self.segment_bytes = segment_bytes
        self.max_record = max_record
        self.preallocate = (PREALLOCATE if fsync else 0) if preallocate is None else preallocate
        self.first = segments[0].number if segments else 1
        # Bytes of each full segment still kept, and their sum (read from
        # the reactor thread for /metrics: plain ints, no lock needed).
        self._full: dict[int, int] = {s.number: s.contents.end for s in segments[:-1]}
        self._full_bytes = sum(self._full.values())
        if segments:
            self.current = segments[-1].number
            self._open(segments[-1].contents)
        else:
            self.current = 0
            self._start_next()

    @property
    def kept_bytes(self) -> int:
        """Bytes of the kept segments up to their last record (the one
        being appended to may have more allocated ahead of it)."""
        return self._full_bytes + self._size

    @property
    def segments(self) -> int:
        """How many segments are kept."""
        return self.current - self.first + 1

    @property
    def path(self) -> str:
        """The segment being appended to."""
        return os.path.join(self.directory, segment_name(self.current))

    def _open(self, contents: records.Contents) -> None:
        """Append to the current segment, which holds ``contents``."""
        self._appender = records.Appender.open(
            self.path, contents, self._fsync, self.max_record, self.preallocate)
        self._size = contents.end
        self._empty = not contents.records

    def _start_next(self) -> None:
        """Make the next segment (whole, durable) and append to it."""
        self.current += 1
        salt = records.create(self.path, self._fsync)
        self._open(records.Contents([], salt, records.HEADER.size, None))

    def append(self, payload: bytes) -> None:
        """Write ``payload`` as the next record, in a new segment if this one is full."""
        size = records.FRAME.size + len(payload)
        if not self._empty and self._size + size > self.segment_bytes:
            # The previous batch was synced, so the full segment is whole on
            # disk; cut to its last record, it ends there for good.
            self._appender.trim()
            self._appender.close()
            self._full[self.current] = self._size
            self._full_bytes += self._size
            self._start_next()
        self._appender.append(payload)
        self._size += size
        self._empty = False

    def plan(self, payload: bytes) -> Optional[tuple[int, bytes, int]]:
        """``payload`` as the next record of the current segment, to be
        written elsewhere (:meth:`records.Appender.plan`); None when it
        needs a new segment or more than one write: :meth:`append` it."""
        size = records.FRAME.size + len(payload)
        if not self._empty and self._size + size > self.segment_bytes:
            return None
        planned = self._appender.plan(payload)
        if planned is not None:
            self._size += size
            self._empty = False
        return planned

    def sync(self) -> None:
        """Make every record appended so far durable."""
        self._appender.sync()

    def close(self) -> None:
        """Close the current segment."""
        self._appender.close()

    def drop_before(self, number: int) -> list[str]:
        """Delete the segments numbered below ``number`` (never the current
        one), oldest first, so a crash midway leaves no gap.

        The caller must have made durable whatever says those records are no
        longer needed (the floor, CONSENSUS D7) before calling this.

        :returns: the paths deleted.
        """
        deleted = []
        while self.first < min(number, self.current):
            path = os.path.join(self.directory, segment_name(self.first))
            os.unlink(path)
            deleted.append(path)
            self._full_bytes -= self._full.pop(self.first, 0)
            self.first += 1
        if deleted and self._fsync:
            fsync_directory(self.directory)
        return deleted
