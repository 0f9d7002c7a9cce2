"""Tests for doozer.storage.segments: rotation, recovery across segments, dropping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from doozer.storage import records, segments
from doozer.storage.errors import DamagedStorage
from doozer.storage.segments import SegmentedLog
from doozer.storage.writer import SynchronousRunner, Writer


def fill(directory: str, payloads: list[bytes], segment_bytes: int = 100) -> SegmentedLog:
    """A log in ``directory`` (new or recovered) with ``payloads`` appended."""
    found, _ = segments.recover(directory, fsync=False)
    log = SegmentedLog(directory, found, fsync=False, segment_bytes=segment_bytes)
    for payload in payloads:
        log.append(payload)
    log.sync()
    return log


def all_records(directory: str) -> list[bytes]:
    """Every record of every segment, in order."""
    return [r for s in segments.recover(directory)[0] for r in s.records]


PAYLOADS = [b"%02d" % n + b"x" * 30 for n in range(10)]  # 40 bytes framed


def test_new_log_starts_segment_one(tmp_path: Path) -> None:
    """An empty dir gets log-00000001, holding no records."""
    log = fill(str(tmp_path), [])
    assert os.listdir(tmp_path) == ["log-00000001"] and log.path.endswith("log-00000001")
    assert all_records(str(tmp_path)) == []


def test_segments_rotate_by_size_and_read_back_in_order(tmp_path: Path) -> None:
    """Records go into a new segment once the current one would pass its
    size; read back, the segments hold every record in order."""
    log = fill(str(tmp_path), PAYLOADS)
    log.close()
    assert segments.numbers(str(tmp_path)) == [1, 2, 3, 4, 5]
    assert all(os.path.getsize(tmp_path / n) <= 100 for n in os.listdir(tmp_path))
    assert all_records(str(tmp_path)) == PAYLOADS


def test_a_record_larger_than_a_segment_gets_one_of_its_own(tmp_path: Path) -> None:
    """Size bounds when to rotate, not what fits: nothing is refused."""
    fill(str(tmp_path), [b"a", b"b" * 300, b"c"]).close()
    assert [s.records for s in segments.recover(str(tmp_path))[0]] == [[b"a"], [b"b" * 300], [b"c"]]


def test_appending_continues_after_recovery(tmp_path: Path) -> None:
    """A reopened log appends to its last segment, after a torn tail is cut."""
    directory = str(tmp_path)
    fill(directory, PAYLOADS[:3]).close()
    last = tmp_path / segments.segment_name(segments.numbers(directory)[-1])
    with open(last, "ab") as f:
        f.write(b"\x00\x00\x00\x28torn")
    found, torn = segments.recover(directory)
    assert torn is not None and torn.path == str(last)
    fill(directory, PAYLOADS[3:]).close()
    assert all_records(directory) == PAYLOADS


def test_torn_record_in_an_earlier_segment_refuses(tmp_path: Path) -> None:
    """Every segment but the last was synced whole: a cut one is damage."""
    fill(str(tmp_path), PAYLOADS).close()
    first = tmp_path / "log-00000001"
    first.write_bytes(first.read_bytes()[:-3])
    with pytest.raises(DamagedStorage, match="log-00000001 at offset .* written whole"):
        segments.recover(str(tmp_path))


def test_missing_segment_refuses(tmp_path: Path) -> None:
    """A gap in the numbers is damage: records would be silently lost."""
    fill(str(tmp_path), PAYLOADS).close()
    os.unlink(tmp_path / "log-00000003")
    with pytest.raises(DamagedStorage, match="log-00000003: missing between log-00000002 and log-00000004"):
        segments.recover(str(tmp_path))


def test_drop_before_deletes_whole_old_segments_never_the_current(tmp_path: Path) -> None:
    """Segments below the given number go, oldest first; the one being
    appended to stays even when asked for; recovery starts at the first kept."""
    directory = str(tmp_path)
    log = fill(directory, PAYLOADS)
    assert [os.path.basename(p) for p in log.drop_before(3)] == ["log-00000001", "log-00000002"]
    assert log.drop_before(3) == []
    log.drop_before(99)
    assert segments.numbers(directory) == [5]
    log.append(b"more")
    log.close()
    found, _ = segments.recover(directory)
    assert [s.number for s in found] == [5, 6]
    assert [r for s in found for r in s.records] == PAYLOADS[8:] + [b"more"]
    reopened = SegmentedLog(directory, found, fsync=False)
    assert reopened.first == 5 and reopened.drop_before(5) == []
    reopened.close()


def test_writer_on_segments_drops_through_call(tmp_path: Path) -> None:
    """The writer's batches rotate segments; call() runs a drop on its thread."""
    directory = str(tmp_path)
    log = SegmentedLog(directory, [], fsync=False, segment_bytes=records.HEADER.size + 60)
    clock = Clock()
    writer = Writer(log, SynchronousRunner(), clock)
    for n in range(6):
        writer.append(b"%d" % n * 20)
        clock.advance(0)
    assert segments.numbers(directory) == [1, 2, 3, 4, 5, 6]
    done: list[object] = []
    writer.call(lambda: log.drop_before(4)).addCallback(done.append)
    assert done == [None] and segments.numbers(directory) == [4, 5, 6]
    writer.stop()


def test_preallocated_segments_are_cut_to_their_records_when_full(tmp_path: Path) -> None:
    """With preallocation the segment being appended to runs ahead of its
    records; a full one is cut to its last record before the next is made,
    so only the last segment ends in zeros, and all read back."""
    directory = str(tmp_path)
    log = SegmentedLog(directory, [], fsync=False, segment_bytes=100, preallocate=4096)
    for payload in PAYLOADS:
        log.append(payload)
    log.sync()
    log.close()
    numbers = segments.numbers(directory)
    assert len(numbers) > 2
    for number in numbers[:-1]:
        path = os.path.join(directory, segments.segment_name(number))
        contents = records.scan(open(path, "rb").read(), path, torn_ok=False)  # no zeros
        assert contents.end == os.path.getsize(path)
    last = os.path.join(directory, segments.segment_name(numbers[-1]))
    assert os.path.getsize(last) > 4096
    assert all_records(directory) == PAYLOADS
    again = fill(directory, [b"more"])
    again.close()
    assert all_records(directory) == PAYLOADS + [b"more"]


def test_zeros_after_a_segment_that_is_not_the_last_are_damage(tmp_path: Path) -> None:
    directory = str(tmp_path)
    fill(directory, PAYLOADS).close()
    first = os.path.join(directory, segments.segment_name(segments.numbers(directory)[0]))
    with open(first, "ab") as f:
        f.write(bytes(50))
    with pytest.raises(DamagedStorage, match="written whole"):
        segments.recover(directory)


def test_preallocation_is_for_syncing_logs_only(tmp_path: Path) -> None:
    """It makes syncs cheaper, so a log that never syncs (tests) has none."""
    for name, fsync, step in (("plain", False, 0), ("synced", True, segments.PREALLOCATE)):
        os.makedirs(tmp_path / name)
        log = SegmentedLog(str(tmp_path / name), [], fsync=fsync)
        assert log.preallocate == step
        log.close()


def test_a_preallocated_segment_reopened_without_preallocation_goes_on_at_its_records(
        tmp_path: Path) -> None:
    """Records go where the last good one ends, never after the zeros (a
    node restarted without fsync on a dir written with it)."""
    directory = str(tmp_path)
    log = SegmentedLog(directory, [], fsync=False, segment_bytes=10_000, preallocate=4096)
    log.append(b"first")
    log.close()
    plain = fill(directory, [b"second"], segment_bytes=10_000)
    plain.close()
    assert all_records(directory) == [b"first", b"second"]


def _on_disk(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, segments.segment_name(n)))
               for n in segments.numbers(directory))


def test_kept_bytes_follow_rotation_drops_and_a_reopen(tmp_path: Path) -> None:
    """``kept_bytes`` (what /metrics shows as the log's size) is the size of
    the segment files up to their last record, without reading them:
    through rotations, after old segments are dropped, and when reopened."""
    directory = str(tmp_path)
    log = fill(directory, [b"%02d" % n * 10 for n in range(8)], segment_bytes=100)
    assert log.segments == len(segments.numbers(directory)) > 2
    assert log.kept_bytes == _on_disk(directory)
    log.drop_before(log.current)
    assert log.segments == 1 and log.kept_bytes == _on_disk(directory)
    log.close()
    reopened = fill(directory, [b"x" * 30], segment_bytes=1000)
    assert reopened.kept_bytes == _on_disk(directory)
