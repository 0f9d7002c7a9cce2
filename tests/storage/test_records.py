"""Tests for doozer.storage.records: framing, torn tails cut, damage refused."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doozer.storage import records
from doozer.storage.errors import DamagedStorage


def write(path: str, payloads: list[bytes]) -> list[int]:
    """A record file at ``path`` holding ``payloads``; each record's offset."""
    records.create(path, fsync=False)
    appender = records.Appender.open(path, records.recover(path, fsync=False), fsync=False)
    offsets = []
    for payload in payloads:
        offsets.append(os.path.getsize(path))
        appender.append(payload)
    appender.close()
    return offsets


def cut(path: str, size: int) -> None:
    """Cut the file at ``path`` to ``size`` bytes."""
    with open(path, "r+b") as f:
        f.truncate(size)


def flip(path: str, offset: int) -> None:
    """Flip every bit of the byte at ``offset``."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))


PAYLOADS = [records.pack({"kind": "promise", "seqn": n, "ballot": [n, "n1"]}) for n in range(1, 5)]


def test_records_read_back(tmp_path: Path) -> None:
    """What was appended is read back in order, with nothing cut."""
    path = str(tmp_path / "log")
    write(path, PAYLOADS)
    contents = records.recover(path)
    assert contents.records == PAYLOADS
    assert contents.torn is None
    assert contents.end == os.path.getsize(path)
    assert [records.unpack(p)["seqn"] for p in contents.records] == [1, 2, 3, 4]


def test_empty_record_file(tmp_path: Path) -> None:
    """A new record file holds no records."""
    path = str(tmp_path / "log")
    records.create(path)
    assert records.recover(path).records == []
    assert os.path.getsize(path) == records.HEADER.size


def test_torn_last_record_cut_at_every_offset(tmp_path: Path) -> None:
    """Cut anywhere inside the last record, the file reads as the records
    before it, the torn bytes are reported and cut off the file itself, and
    appending goes on from there."""
    whole = str(tmp_path / "whole")
    offsets = write(whole, PAYLOADS)
    last, size = offsets[-1], os.path.getsize(whole)
    for at in range(last, size):
        path = str(tmp_path / "log")
        shutil.copy(whole, path)
        cut(path, at)
        contents = records.recover(path, fsync=False)
        assert contents.records == PAYLOADS[:-1], at
        assert os.path.getsize(path) == last, at
        if at == last:
            assert contents.torn is None
        else:
            assert contents.torn is not None
            assert (contents.torn.offset, contents.torn.size) == (last, at - last)
            assert f"offset {last}" in contents.torn.describe()
        appender = records.Appender.open(path, contents, fsync=False)
        appender.append(b"after")
        appender.close()
        assert records.recover(path).records == PAYLOADS[:-1] + [b"after"], at


def test_zeroed_tail_is_cut(tmp_path: Path) -> None:
    """A last record whose blocks never reached the disk (zeros, as some
    file systems leave after a crash) is cut, however its zeros fall."""
    path = str(tmp_path / "log")
    offsets = write(path, PAYLOADS)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(offsets[-1])
        f.write(bytes(size - offsets[-1]))
    contents = records.recover(path)
    assert contents.records == PAYLOADS[:-1]
    assert contents.torn is not None and "length of 0" in contents.torn.problem


def test_damage_in_last_record_is_cut(tmp_path: Path) -> None:
    """A bad byte in the last record cannot be told from a torn write: cut."""
    path = str(tmp_path / "log")
    offsets = write(path, PAYLOADS)
    flip(path, offsets[-1] + records.FRAME.size + 2)
    contents = records.recover(path)
    assert contents.records == PAYLOADS[:-1]
    assert contents.torn is not None and "CRC" in contents.torn.problem


def test_flipped_byte_in_middle_record_refuses(tmp_path: Path) -> None:
    """Any flipped byte of a record followed by good ones (length, CRC or
    payload) refuses, naming the file, the offset and what to do; the file
    is left as it was."""
    whole = str(tmp_path / "whole")
    offsets = write(whole, PAYLOADS)
    middle, after = offsets[1], offsets[2]
    for at in range(middle, after):
        path = str(tmp_path / "log")
        shutil.copy(whole, path)
        flip(path, at)
        with pytest.raises(DamagedStorage) as caught:
            records.recover(path)
        message = str(caught.value)
        assert f"{path} at offset {middle}" in message, at
        assert "wipe the data dir and rejoin the cluster as a new node" in message
        assert "\n" not in message
        assert os.path.getsize(path) == os.path.getsize(whole)


def test_wrong_magic_refuses(tmp_path: Path) -> None:
    """A file that is not a record file refuses, saying so."""
    path = str(tmp_path / "log")
    write(path, PAYLOADS)
    flip(path, 0)
    with pytest.raises(DamagedStorage, match="not a doozer record file"):
        records.recover(path)


def test_damaged_header_refuses(tmp_path: Path) -> None:
    """A bad salt (which would make every record look bad) refuses."""
    path = str(tmp_path / "log")
    write(path, PAYLOADS)
    flip(path, len(records.MAGIC))
    with pytest.raises(DamagedStorage, match="file header whose CRC"):
        records.recover(path)


@pytest.mark.parametrize("size", [0, 5, records.HEADER.size - 1])
def test_short_header_refuses(tmp_path: Path, size: int) -> None:
    """A file cut inside its header refuses: record files are made whole."""
    path = str(tmp_path / "log")
    write(path, [])
    cut(path, size)
    with pytest.raises(DamagedStorage, match="file header cut short"):
        records.recover(path)


def test_absurd_length_is_damage_not_allocation(tmp_path: Path) -> None:
    """A length of 4 GiB in the last record is a torn record (cut); with a
    good record after it, damage. Neither allocates it."""
    path = str(tmp_path / "log")
    offsets = write(path, PAYLOADS)
    with open(path, "r+b") as f:
        f.seek(offsets[-1])
        f.write(b"\xff\xff\xff\xff")
    contents = records.recover(path)
    assert contents.records == PAYLOADS[:-1]
    assert contents.torn is not None and "length of 4294967295" in contents.torn.problem
    with open(path, "r+b") as f:
        f.seek(offsets[1])
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(DamagedStorage, match="length of 4294967295.*followed by a good record"):
        records.recover(path)


def test_more_than_one_record_after_damage_refuses(tmp_path: Path) -> None:
    """Damage followed by more bytes than one record can hold is not a torn
    write, even when nothing after it reads as a record; within one
    record's size it cannot be told from one (and is cut)."""
    path = str(tmp_path / "log")
    offsets = write(path, [b"a" * 30, b"b" * 30, b"c" * 30])
    flip(path, offsets[1] + records.FRAME.size)
    flip(path, offsets[2] + records.FRAME.size)
    data = Path(path).read_bytes()
    with pytest.raises(DamagedStorage, match="followed by 76 bytes, more than one torn write leaves"):
        records.scan(data, path, max_record=30)
    assert records.scan(data, path, max_record=100).records == [b"a" * 30]


def test_record_hidden_in_torn_payload_does_not_refuse(tmp_path: Path) -> None:
    """A torn last record whose payload holds a whole record (a user's value
    may be anything) is cut, not taken for a good record after damage: the
    file's random salt is in every record's CRC."""
    path = str(tmp_path / "log")
    salt = records.create(path)
    other_salt = (salt + 1) % 2**32
    hidden = records.frame(b"a record of some other file", other_salt)
    appender = records.Appender.open(path, records.recover(path))
    appender.append(b"first")
    appender.append(b"padding" + hidden + b"more")
    appender.close()
    cut(path, os.path.getsize(path) - 1)
    contents = records.recover(path)
    assert contents.records == [b"first"]
    assert contents.torn is not None


def test_whole_file_round_trip_and_refusals(tmp_path: Path) -> None:
    """A file written whole holds one record; cut or padded, it refuses."""
    data = records.encode_whole(b"payload")
    assert records.decode_whole(data, "f") == b"payload"
    with pytest.raises(DamagedStorage, match="cut short.*written whole"):
        records.decode_whole(data[:-1], "f")
    with pytest.raises(DamagedStorage, match="2 records"):
        records.decode_whole(data + data[records.HEADER.size:], "f")


class ChunkedFile:
    """A raw file that writes at most a few bytes per call, or fails."""

    def __init__(self, chunk: int = 3, error: Optional[OSError] = None) -> None:
        self.data = bytearray()
        self.chunk = chunk
        self.error = error

    def write(self, data: memoryview, /) -> Optional[int]:
        if self.error is not None:
            raise self.error
        self.data += data[: self.chunk]
        return min(self.chunk, len(data))

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


def test_appender_finishes_short_writes() -> None:
    """A raw file may take fewer bytes than given: the rest is written too."""
    file = ChunkedFile()
    appender = records.Appender(file, "f", 7, sync=None)
    appender.append(b"hello, world")
    data = records.header(7) + bytes(file.data)
    assert records.scan(data, "f").records == [b"hello, world"]


def test_appender_refuses_empty_and_oversized_payloads() -> None:
    """Records are 1 to max_record bytes: nothing else is written."""
    file = ChunkedFile()
    appender = records.Appender(file, "f", 7, sync=None, max_record=10)
    for payload in (b"", b"x" * 11):
        with pytest.raises(ValueError):
            appender.append(payload)
    assert file.data == b""


def test_appender_passes_write_errors_on() -> None:
    """ENOSPC from the file reaches the caller (the writer fails on it)."""
    appender = records.Appender(ChunkedFile(error=OSError(errno.ENOSPC, "No space left")), "f", 7)
    with pytest.raises(OSError) as caught:
        appender.append(b"x")
    assert caught.value.errno == errno.ENOSPC


def test_unpack_refuses_what_is_not_msgpack() -> None:
    """A payload that is not one msgpack object is a ValueError."""
    assert records.unpack(records.pack({"a": [1, b"x"]})) == {"a": [1, b"x"]}
    for bad in (b"\xc1", records.pack(1) + b"\x00", b"\x92\x01"):
        with pytest.raises(ValueError):
            records.unpack(bad)


payload_lists = st.lists(st.binary(min_size=1, max_size=40), max_size=8)


def encoded(payloads: list[bytes], salt: int = 99) -> tuple[bytes, list[int]]:
    """A record file's bytes holding ``payloads``; where each record ends."""
    data = records.header(salt)
    ends = []
    for payload in payloads:
        data += records.frame(payload, salt)
        ends.append(len(data))
    return data, ends


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload_lists, st.data())
def test_any_cut_reads_as_a_prefix(payloads: list[bytes], data: st.DataObject) -> None:
    """Records written, then the file cut anywhere after its header: what is
    read back is the records that ended before the cut, in order."""
    whole, ends = encoded(payloads)
    at = data.draw(st.integers(records.HEADER.size, len(whole)))
    contents = records.scan(whole[:at], "f")
    kept = sum(1 for end in ends if end <= at)
    assert contents.records == payloads[:kept]
    assert contents.end == (ends[kept - 1] if kept else records.HEADER.size)
    assert (contents.torn is None) == (contents.end == at)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload_lists.filter(lambda p: len(p) >= 2), st.data())
def test_any_flip_before_the_last_record_refuses(payloads: list[bytes], data: st.DataObject) -> None:
    """A byte changed anywhere before the last record refuses."""
    whole, ends = encoded(payloads)
    at = data.draw(st.integers(0, ends[-2] - 1))
    xor = data.draw(st.integers(1, 255))
    damaged = bytearray(whole)
    damaged[at] ^= xor
    with pytest.raises(DamagedStorage):
        records.scan(bytes(damaged), "f")


@pytest.mark.skipif(not records.O_DSYNC, reason="no O_DSYNC here")
def test_an_fsyncing_appender_writes_synchronously(tmp_path: Path) -> None:
    """With fsync the file is opened O_DSYNC (each write returns once its
    data is as durable as an fdatasync makes it; not O_SYNC, which also
    syncs timestamps) and sync() has nothing left to do; without, neither."""
    import fcntl

    path = str(tmp_path / "log")
    records.create(path)
    synced = records.Appender.open(path, records.recover(path))
    flags = fcntl.fcntl(synced.file.fileno(), fcntl.F_GETFL)
    assert flags & records.O_DSYNC == records.O_DSYNC
    assert flags & os.O_SYNC != os.O_SYNC
    assert synced._sync is None
    synced.append(b"one")
    synced.sync()
    synced.close()
    plain = records.Appender.open(path, records.recover(path), fsync=False)
    assert fcntl.fcntl(plain.file.fileno(), fcntl.F_GETFL) & records.O_DSYNC != records.O_DSYNC
    plain.append(b"two")
    plain.close()
    assert records.recover(path).records == [b"one", b"two"]


# -- preallocated files: zeros past the last record -----------------------------

STEP = 4096


def write_preallocated(path: str, payloads: list[bytes]) -> list[int]:
    """A preallocated record file holding ``payloads``; each record's offset."""
    records.create(path, fsync=False)
    appender = records.Appender.open(
        path, records.recover(path, fsync=False), fsync=False, preallocate=STEP)
    offsets = []
    for payload in payloads:
        offsets.append(appender.position)
        appender.append(payload)
    appender.close()
    return offsets


def zero(path: str, start: int, end: int) -> None:
    """Zeros over ``[start, end)``: bytes a crash never wrote."""
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes(end - start))


def test_preallocated_file_runs_ahead_and_reads_back(tmp_path: Path) -> None:
    """The file's size runs a step ahead of its records; read with
    zero_tail it ends at the last record, without it the zeros refuse."""
    path = str(tmp_path / "log")
    offsets = write_preallocated(path, PAYLOADS)
    end = offsets[-1] + records.FRAME.size + len(PAYLOADS[-1])
    size = os.path.getsize(path)
    assert size >= STEP and size > end
    contents = records.recover(path, zero_tail=True)
    assert contents.records == PAYLOADS and contents.torn is None and contents.end == end
    assert os.path.getsize(path) == size  # a clean end keeps the space
    with pytest.raises(DamagedStorage, match="more than one torn write"):
        records.recover(path, max_record=100)  # without zero_tail the zeros are bytes
    appender = records.Appender.open(path, contents, fsync=False, preallocate=STEP)
    appender.append(b"more")
    appender.close()
    assert records.recover(path, zero_tail=True).records == PAYLOADS + [b"more"]


def test_preallocated_torn_last_record_is_cut_at_every_offset(tmp_path: Path) -> None:
    """A crash while writing the last record leaves a prefix of it and then
    zeros (the space was allocated): at every cut, the records before it
    read back, and appending goes on where they end."""
    base = str(tmp_path / "base")
    offsets = write_preallocated(base, PAYLOADS)
    start = offsets[-1]
    end = start + records.FRAME.size + len(PAYLOADS[-1])
    for at in range(start, end):
        path = str(tmp_path / "log")
        shutil.copy(base, path)
        zero(path, at, end)
        contents = records.recover(path, zero_tail=True)
        assert contents.records == PAYLOADS[:-1], at
        assert contents.end == start
        if contents.torn is not None:  # else only zeros were written: nothing to cut
            assert contents.torn.offset == start and os.path.getsize(path) == start
        appender = records.Appender.open(path, contents, fsync=False, preallocate=STEP)
        appender.append(b"next")
        appender.close()
        assert records.recover(path, zero_tail=True).records == PAYLOADS[:-1] + [b"next"]


def test_preallocated_damage_is_refused(tmp_path: Path) -> None:
    """A flipped byte in a middle record, or bytes past the last record
    farther than one torn record reaches, refuse as in any record file."""
    base = str(tmp_path / "base")
    offsets = write_preallocated(base, PAYLOADS)
    end = offsets[-1] + records.FRAME.size + len(PAYLOADS[-1])
    path = str(tmp_path / "middle")
    shutil.copy(base, path)
    flip(path, offsets[1] + records.FRAME.size + 2)
    with pytest.raises(DamagedStorage, match="followed by a good record"):
        records.recover(path, zero_tail=True)
    path = str(tmp_path / "far")
    shutil.copy(base, path)
    flip(path, end + 200)
    with pytest.raises(DamagedStorage, match="more than one torn write"):
        records.recover(path, zero_tail=True, max_record=100)
    path = str(tmp_path / "near")  # within one record's reach: a torn write, cut
    shutil.copy(base, path)
    flip(path, end + 5)
    contents = records.recover(path, zero_tail=True)
    assert contents.records == PAYLOADS and contents.torn is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=8), st.data())
def test_preallocated_any_crash_reads_back_as_a_prefix(tmp_path: Path, payloads: list[bytes],
                                                        data: st.DataObject) -> None:
    """Whatever prefix of the bytes written reached the disk (the rest
    zeros), reading gives a prefix of the records, whole."""
    path = str(tmp_path / "log")
    if os.path.exists(path):
        os.unlink(path)
    write_preallocated(path, payloads)
    size = records.HEADER.size + sum(records.FRAME.size + len(p) for p in payloads)
    at = data.draw(st.integers(min_value=records.HEADER.size, max_value=size))
    zero(path, at, size)
    got = records.recover(path, zero_tail=True).records
    assert got == payloads[:len(got)]
    assert sum(records.FRAME.size + len(p) for p in got) <= at - records.HEADER.size


def test_preallocation_that_fails_is_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk refuses the allocation, after some of its zeros were
    written: the zeros written are given back (the records may need that
    space) and the records are written all the same, without space ahead."""
    pwrite = os.pwrite
    calls = []

    def fills_a_little(fd: int, data: bytes, offset: int) -> int:
        calls.append(offset)
        if len(calls) == 1:  # a whole chunk: more than the records take
            return pwrite(fd, data, offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records, "ZERO_CHUNK", 1024)
    monkeypatch.setattr(os, "pwrite", fills_a_little)
    path = str(tmp_path / "log")
    write_preallocated(path, PAYLOADS)
    assert len(calls) == 2
    assert os.path.getsize(path) == records.HEADER.size + sum(records.FRAME.size + len(p) for p in PAYLOADS)
    assert records.recover(path, zero_tail=True).records == PAYLOADS


def test_preallocated_space_is_written_not_reserved(tmp_path: Path) -> None:
    """The space ahead is zeros written to the file, not a hole nor
    posix_fallocate's unwritten extents (which ext4 reports as holes): a
    synced append there then changes no block map, so it commits nothing
    to the file system's journal."""
    path = str(tmp_path / "log")
    records.create(path, fsync=False)
    appender = records.Appender.open(path, records.recover(path), fsync=False, preallocate=STEP)
    fd = appender.file.fileno()
    probe = str(tmp_path / "probe")
    with open(probe, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, STEP)
        if os.lseek(f.fileno(), 0, os.SEEK_HOLE) != 0:
            pytest.skip("this file system does not report unreserved or unwritten space as holes")
    appender.append(b"one")
    size = os.fstat(fd).st_size
    assert size >= records.HEADER.size + STEP
    assert os.lseek(fd, 0, os.SEEK_HOLE) == size
    appender.close()


def test_trim_cuts_the_space_ahead(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    records.create(path, fsync=False)
    appender = records.Appender.open(path, records.recover(path), fsync=False, preallocate=STEP)
    appender.append(b"one")
    assert os.path.getsize(path) > appender.position
    appender.trim()
    appender.close()
    assert os.path.getsize(path) == records.HEADER.size + records.FRAME.size + 3
    assert records.recover(path).records == [b"one"]  # no zeros left: reads strictly
