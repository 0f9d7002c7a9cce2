"""Record files: a checked header, then records framed as length + CRC32 + payload.

Layout (all integers big-endian)::

    header  magic "doozrec1" (8) | salt u32 | crc32(magic + salt) u32
    record  length u32 | crc32(length + payload, start=salt) u32 | payload

A crash while appending tears at most the last record (the writer never
starts a record before the one before it is synced), so reading cuts a
torn last record and refuses every other damage (:class:`DamagedStorage`).
The salt, random per file, keeps a payload that happens to hold a whole
record (a user's value can be anything) from passing as one.

A file being appended to may be **preallocated** (:class:`Appender`'s
``preallocate``): its size runs ahead of its records, and the space past
the last record reads as zeros. Read with ``zero_tail`` (:func:`scan`), a
file ends where only zeros follow; a torn last record is then followed by
zeros instead of the end of the file, and the rule is the same: no more
bytes that are not zeros after its start than one record can hold.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Union

import msgpack

from doozer.storage.errors import DamagedStorage
from doozer.storage.files import read_whole, write_atomically

MAGIC = b"doozrec1"
HEADER = struct.Struct(">8sII")  # magic, salt, crc32(magic + salt)
FRAME = struct.Struct(">II")  # length, crc32(length + payload) started at the salt

#: The largest payload: a bound on what one read may allocate, and on how
#: far past a torn record reading looks for a good one.
MAX_RECORD = 1 << 20


@dataclass(frozen=True)
class Torn:
    """A torn last record, cut off when the file was read.

    :param path: the file.
    :param offset: where the torn record began (the file's new size).
    :param size: how many bytes were cut.
    :param problem: what was wrong with them.
    """

    path: str
    offset: int
    size: int
    problem: str

    def describe(self) -> str:
        """One line for the start-up log."""
        return (f"{self.path}: cut a torn last record at offset {self.offset} "
                f"({self.size} bytes, {self.problem}), left by a crash while writing")


@dataclass(frozen=True)
class Contents:
    """What a record file holds.

    :param records: the good records' payloads, in order.
    :param salt: the file's salt (appending needs it).
    :param end: the offset just past the last good record.
    :param torn: the torn last record that was cut, if there was one.
    """

    records: list[bytes]
    salt: int
    end: int
    torn: Optional[Torn]


def header(salt: int) -> bytes:
    """A record file's header with ``salt``."""
    return HEADER.pack(MAGIC, salt, zlib.crc32(MAGIC + salt.to_bytes(4, "big")))


def frame(payload: bytes, salt: int) -> bytes:
    """``payload`` framed as a record of a file with ``salt``."""
    length = len(payload).to_bytes(4, "big")
    return length + zlib.crc32(payload, zlib.crc32(length, salt)).to_bytes(4, "big") + payload


def new_salt() -> int:
    """A random salt for a new file."""
    return int.from_bytes(os.urandom(4), "big")


def pack(obj: Any) -> bytes:
    """``obj`` (plain dicts, lists, str, bytes, ints) as a msgpack payload."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack(payload: bytes) -> Any:
    """The object :func:`pack` made ``payload`` from.

    :raises ValueError: when ``payload`` is not one msgpack object.
    """
    try:
        return msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.UnpackException) as e:  # ExtraData is a ValueError
        raise ValueError(f"not a msgpack payload: {e}") from None


def _check(data: bytes, offset: int, salt: int, max_record: int) -> Union[int, str]:
    """The end of the good record at ``offset``, or what is wrong with it."""
    left = len(data) - offset
    if left < FRAME.size:
        return f"a record header cut short ({left} of {FRAME.size} bytes)"
    length: int
    crc: int
    length, crc = FRAME.unpack_from(data, offset)
    if not 1 <= length <= max_record:
        return f"a record length of {length} (records are 1 to {max_record} bytes)"
    end = offset + FRAME.size + length
    if end > len(data):
        return f"a record of {length} bytes cut short ({left - FRAME.size} present)"
    view = memoryview(data)
    if zlib.crc32(view[offset + FRAME.size:end], zlib.crc32(view[offset:offset + 4], salt)) != crc:
        return "a record whose CRC does not match"
    return end


def _good_record_after(data: bytes, offset: int, salt: int, max_record: int,
                       before: Optional[int] = None) -> Optional[int]:
    """The first offset past ``offset`` (and before ``before``) where a good
    record starts, if any.

    Every offset is tried, since a damaged length says nothing about where
    the next record starts; callers bound the search to one record's size.
    """
    last = len(data) - FRAME.size
    if before is not None:
        last = min(last, before)
    for start in range(offset + 1, last):
        length = int.from_bytes(data[start:start + 4], "big")
        if 1 <= length <= last - start and isinstance(_check(data, start, salt, max_record), int):
            return start
    return None


def _nonzero_end(data: bytes, offset: int) -> int:
    """Just past the last byte from ``offset`` on that is not zero
    (``offset`` when there is none)."""
    if data.count(0, offset) == len(data) - offset:
        return offset
    end = len(data)
    while end > offset:  # backwards, a piece at a time: no copy of the whole
        start = max(offset, end - 65536)
        kept = data[start:end].rstrip(b"\0")
        if kept:
            return start + len(kept)
        end = start
    return offset  # pragma: no cover (the count above found a byte that is not zero)


def scan(data: bytes, path: str, torn_ok: bool = True, max_record: int = MAX_RECORD,
         zero_tail: bool = False) -> Contents:
    """The records of a record file's bytes ``data``.

    A bad record is a torn last record when no good record follows it and
    no more bytes follow its start than one record can take: it is left out
    and reported in :attr:`Contents.torn`. Anything else is damage.

    :param path: the file's name, for messages.
    :param torn_ok: False for files written whole (:func:`write_atomically`),
        which a crash cannot tear: a torn record is damage there too.
    :param max_record: the largest payload the file's writer allowed.
    :param zero_tail: the file may be preallocated: where only zeros
        follow, it ends (with no torn record), and a torn record may be
        followed by zeros; only the bytes up to the last one that is not
        zero count as what follows it.
    :raises DamagedStorage: on a bad header or damage no crash explains.
    """
    if len(data) < HEADER.size:
        raise DamagedStorage(path, f"file header cut short ({len(data)} of {HEADER.size} bytes)", 0)
    magic, salt, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DamagedStorage(path, f"not a doozer record file (magic {magic!r}, expected {MAGIC!r})", 0)
    if zlib.crc32(data[:12]) != crc:
        raise DamagedStorage(path, "file header whose CRC does not match", 0)
    records: list[bytes] = []
    offset = HEADER.size
    while offset < len(data):
        checked = _check(data, offset, salt, max_record)
        if isinstance(checked, int):
            records.append(data[offset + FRAME.size:checked])
            offset = checked
            continue
        end = _nonzero_end(data, offset) if zero_tail else len(data)
        if end == offset:  # zeros only: space preallocated, never written
            return Contents(records, salt, offset, None)
        left = end - offset
        if not torn_ok:
            raise DamagedStorage(path, checked + " in a file written whole", offset)
        if left > FRAME.size + max_record:
            raise DamagedStorage(
                path, f"{checked}, followed by {left} bytes, more than one torn write leaves", offset)
        good = _good_record_after(data, offset, salt, max_record, end)
        if good is not None:
            raise DamagedStorage(path, f"{checked}, followed by a good record at offset {good}", offset)
        return Contents(records, salt, offset, Torn(path, offset, left, checked))
    return Contents(records, salt, offset, None)


def create(path: str, fsync: bool = True) -> int:
    """Make ``path`` an empty record file (atomically).

    :returns: its salt.
    """
    salt = new_salt()
    write_atomically(path, header(salt), fsync)
    return salt


def recover(path: str, fsync: bool = True, max_record: int = MAX_RECORD,
            zero_tail: bool = False) -> Contents:
    """The records of the file at ``path``, a torn last record cut off the
    file itself (so appending goes on from the last good record; a
    preallocated file loses its preallocation then).

    :raises DamagedStorage: as :func:`scan`.
    """
    contents = scan(read_whole(path), path, True, max_record, zero_tail)
    if contents.torn is not None:
        with open(path, "r+b") as f:
            f.truncate(contents.end)
            if fsync:
                os.fsync(f.fileno())
    return contents


def encode_whole(payload: bytes) -> bytes:
    """A file of one record, to be written with :func:`write_atomically`."""
    salt = new_salt()
    return header(salt) + frame(payload, salt)


def decode_whole(data: bytes, path: str) -> bytes:
    """The one record of a file :func:`encode_whole` made.

    :raises DamagedStorage: unless ``data`` is exactly one good record.
    """
    contents = scan(data, path, torn_ok=False)
    if len(contents.records) != 1:
        raise DamagedStorage(path, f"{len(contents.records)} records in a file of one")
    return contents.records[0]


class Writable(Protocol):
    """The part of a raw (unbuffered) file an :class:`Appender` uses."""

    def write(self, data: memoryview, /) -> Optional[int]: ...

    def fileno(self) -> int: ...

    def seek(self, offset: int, /) -> int: ...

    def close(self) -> None: ...


#: Open flag for writes that return once their data is synced, with the
#: metadata needed to read it back (the size, the block map), as
#: ``fdatasync`` leaves it; 0 where there is none.
O_DSYNC: int = getattr(os, "O_DSYNC", 0)

#: Bytes of zeros written per system call when space is allocated ahead.
ZERO_CHUNK = 1 << 20


def _synchronous(path: str, flags: int) -> int:
    return os.open(path, flags | O_DSYNC)


def fill_zeros(fd: int, start: int, end: int) -> None:
    """Write zeros over ``[start, end)`` of the file ``fd``.

    Space allocated this way is written, not merely reserved: a later
    write there changes no block map, which ``posix_fallocate``'s unwritten
    extents do on ext4 (each write into them converts an extent: a journal
    commit per synced append).

    :raises OSError: when the space is not there (``ENOSPC``); part of the
        range may be written then.
    """
    zeros = memoryview(bytes(min(ZERO_CHUNK, end - start)))
    while start < end:
        written = os.pwrite(fd, zeros[:end - start], start)
        if written <= 0:
            raise OSError(errno.ENOSPC, f"wrote {written} bytes of zeros at {start}")
        start += written


class Appender:
    """Appends records to a record file; :meth:`sync` makes them durable.

    Blocking: run it off the reactor thread (:mod:`doozer.storage.writer`).

    :param file: the file, open for appending, unbuffered.
    :param path: its name, for messages.
    :param salt: its salt (:attr:`Contents.salt`).
    :param sync: called with the file descriptor to make writes durable;
        None only in tests (``--unsafe-no-fsync``).
    :param max_record: the largest payload.
    """

    def __init__(self, file: Writable, path: str, salt: int,
                 sync: Optional[Callable[[int], None]] = os.fsync,
                 max_record: int = MAX_RECORD, preallocate: int = 0, position: int = 0,
                 allocated: int = 0) -> None:
        self.file = file
        self.path = path
        self.salt = salt
        self._sync = sync
        self.max_record = max_record
        #: bytes allocated at a time ahead of the records (0: none)
        self.preallocate = preallocate
        #: where the next record goes, and the file's allocated size
        self.position = position
        self.allocated = allocated
        #: whether writes are made durable (trim syncs then too)
        self.durable = sync is not None
        # records were planned (written elsewhere, at their offsets) since
        # the last append: the file's own offset is behind them
        self._planned = False

    @classmethod
    def open(cls, path: str, contents: Contents, fsync: bool = True,
             max_record: int = MAX_RECORD, preallocate: int = 0) -> Appender:
        """An appender to ``path``, which :func:`recover` returned ``contents`` of.

        Records are written at their position (the end of the last good
        one), not appended at the end of the file: the file may have been
        preallocated (zeros follow its records).

        With ``fsync`` the file is opened ``O_DSYNC``: each write returns
        once its data is on disk with what is needed to read it back (the
        size, the block map; data integrity completion, as ``fdatasync``
        and etcd's WAL), so :meth:`sync` has nothing left to do. One system
        call per batch instead of two, and the writer's thread takes the
        GIL back once per batch instead of twice (under load each take can
        wait for the busy reactor thread). Only timestamps are left
        unsynced, and nothing reads them. Where ``O_DSYNC`` is missing,
        writes are followed by ``fsync``.

        With ``preallocate`` the file's space is allocated that many bytes
        at a time ahead of its records, by writing zeros there
        (:func:`fill_zeros`): appending then changes neither the file's
        size nor its block map, so the sync of a batch writes the data and
        nothing else (``bench/fsync.py``, docs/benchmarks.md). The file
        must then be read with ``zero_tail``. Where space cannot be
        allocated (a full disk) appending goes on without.
        """
        opener = _synchronous if fsync and O_DSYNC else None
        file = open(path, "r+b", buffering=0, opener=opener)
        file.seek(contents.end)
        sync = os.fsync if fsync and not O_DSYNC else None
        appender = cls(file, path, contents.salt, sync, max_record, preallocate, contents.end,
                       os.fstat(file.fileno()).st_size)
        appender.durable = fsync
        return appender

    def _allocate(self, needed: int) -> None:
        """Allocate the file up to at least ``needed`` bytes, a step ahead."""
        target = max(needed, self.allocated) + self.preallocate
        fd = self.file.fileno()
        try:
            fill_zeros(fd, self.allocated, target)
        except OSError:  # full: write without, and give back what was filled
            self.preallocate = 0
            with contextlib.suppress(OSError):  # the zeros only cost space
                if os.fstat(fd).st_size > self.allocated:
                    os.ftruncate(fd, self.allocated)
            return
        self.allocated = target

    def trim(self) -> None:
        """Cut whatever the file holds past the last record (space
        preallocated), durably when syncing: a full segment that is not the
        last one ends with its last record."""
        fd = self.file.fileno()
        if os.fstat(fd).st_size > self.position:
            os.ftruncate(fd, self.position)
            if self.durable:
                os.fsync(fd)
        self.allocated = self.position

    def append(self, payload: bytes) -> None:
        """Write ``payload`` as the next record (not yet durable).

        :raises ValueError: when it is empty or larger than ``max_record``.
        :raises OSError: when writing fails (e.g. ``ENOSPC``).
        """
        self._check_size(payload)
        view = memoryview(frame(payload, self.salt))
        if self.preallocate and self.position + len(view) > self.allocated:
            self._allocate(self.position + len(view))
        if self._planned:  # the file's offset is behind the planned writes
            self.file.seek(self.position)
            self._planned = False
        while view:  # a raw file may write less than it was given
            written = self.file.write(view)
            if written is None:  # only a non-blocking file would say so
                raise OSError(f"{self.path}: write would block")
            view = view[written:]
            self.position += written

    def plan(self, payload: bytes) -> Optional[tuple[int, bytes, int]]:
        """``payload`` framed as the next record, to be written elsewhere
        (:mod:`doozer.storage.syncer`): the file's descriptor, the bytes and
        their offset, counted as written from now on. None when writing it
        takes more than one durable write (the file is not ``O_DSYNC``, or
        space must be allocated first): :meth:`append` it instead.

        :raises ValueError: when it is empty or larger than ``max_record``.
        """
        self._check_size(payload)
        if not self.durable or self._sync is not None:
            return None
        offset = self.position
        end = offset + FRAME.size + len(payload)
        if self.preallocate and end > self.allocated:
            return None
        self.position = end
        self._planned = True
        return self.file.fileno(), frame(payload, self.salt), offset

    def _check_size(self, payload: bytes) -> None:
        if not 1 <= len(payload) <= self.max_record:
            raise ValueError(f"a record of {len(payload)} bytes (1 to {self.max_record} allowed)")

    def sync(self) -> None:
        """Make every record appended so far durable."""
        if self._sync is not None:
            self._sync(self.file.fileno())

    def close(self) -> None:
        """Close the file."""
        self.file.close()
