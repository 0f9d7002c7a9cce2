"""Tests for doozer.store.backup: round trips, and damage always detected."""

from __future__ import annotations

import hashlib
import itertools
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doozer.store import Store
from doozer.store import backup
from doozer.store import mutation as mut
from doozer.store import snapshot as store_snapshot
from doozer.store.backup import DIGEST_SIZE, MAGIC, BackupError

FAR = 10**9
_requests = itertools.count(1)


def S(path: str, value: bytes = b"v") -> bytes:
    return mut.set_("t", next(_requests), path, value, until=FAR).encode()


def D(path: str) -> bytes:
    return mut.delete("t", next(_requests), path, until=FAR).encode()


def small_store() -> Store:
    """A store with files, a delete, binary values and a pruned history."""
    store = Store(hist=4)
    for i in range(12):
        store.apply([S(f"/d/f{i % 3}", bytes([i, 255 - i])), S("/top", b"")])
    store.apply([D("/d/f1")])
    return store


def everything(store: Store) -> tuple:
    """What a backup must keep: files at the head with their revs, the
    history window (oldest, events), and the files at every kept rev."""
    at_each = [store.walk("/**", rev) for rev in range(max(store.oldest, 1), store.rev + 1)]
    events = store.events("/**", store.oldest, 10**6) if store.rev else []
    return store.rev, store.oldest, store.walk("/**"), events, at_each


def test_round_trip_keeps_files_revs_history_and_header() -> None:
    store = small_store()
    data = backup.encode(store, cluster="prod", cluster_id="C1", node="N1", created=1234.5)
    got = backup.decode(data)
    assert (got.version, got.cluster, got.cluster_id, got.node, got.created) == (1, "prod", "C1", "N1", 1234.5)
    assert (got.rev, got.oldest, got.files) == (store.rev, store.oldest, store.file_count)
    assert everything(got.store) == everything(store)
    assert got.store.hist == store.hist


def test_no_deduplication_record_is_kept() -> None:
    """A backup restores as a new cluster: other nodes' request ids mean nothing there."""
    store = small_store()
    keys = [key for key, _, _ in store._dedup.entries()]
    peer_copy = store_snapshot.load(store_snapshot.dump(store))
    assert keys and all(peer_copy.outcome_of(key) for key in keys)
    restored = backup.decode(backup.encode(store, cluster="c")).store
    assert not any(restored.outcome_of(key) for key in keys)


def test_the_pieces_are_the_whole_and_capture_one_rev() -> None:
    """chunks() captures at the call: writes applied while it is being read
    do not appear in it."""
    store = Store(hist=100)
    for i in range(40):
        store.apply([S(f"/f{i}", bytes(10_000))])
    pieces = backup.chunks(store, cluster="c")
    first = next(pieces)
    at = store.rev
    store.apply([S("/f0", b"later"), S("/new", b"later"), D("/f1")])
    data = first + b"".join(pieces)
    assert len(data) > 2 * backup.CHUNK_SIZE  # it was streamed in several pieces
    got = backup.decode(data)
    assert got.rev == at
    assert got.store.walk("/**") == store.walk("/**", at)
    assert backup.encode(got.store, cluster="c") == data  # the same store, the same bytes


def test_an_empty_store_round_trips() -> None:
    got = backup.decode(backup.encode(Store(), cluster="c"))
    assert (got.rev, got.files, got.store.walk("/**")) == (0, 0, [])


def test_every_truncation_is_detected() -> None:
    data = backup.encode(small_store(), cluster="c")
    for size in range(len(data)):
        with pytest.raises(BackupError, match="truncated|damaged"):
            backup.decode(data[:size])


def test_every_flipped_byte_is_detected() -> None:
    data = backup.encode(small_store(), cluster="c")
    for i in range(len(data)):
        for flip in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[i] ^= flip
            with pytest.raises(BackupError):
                backup.decode(bytes(damaged))


def test_appended_bytes_are_detected() -> None:
    data = backup.encode(small_store(), cluster="c")
    with pytest.raises(BackupError, match="damaged"):
        backup.decode(data + b"\n")


@pytest.mark.parametrize("data", [b"", b"\x89doo", b'{"rev": 1}', b"x" * 100])
def test_other_files_are_named_for_what_they_are(data: bytes) -> None:
    with pytest.raises(BackupError, match="truncated|not a doozer backup"):
        backup.decode(data)


def _rewrite_header(data: bytes, **changes: object) -> bytes:
    """``data`` with header fields changed and the checksum made good again."""
    start = len(MAGIC) + 4
    (length,) = struct.unpack_from(">I", data, len(MAGIC))
    header = msgpack.unpackb(data[start:start + length])
    header.update(changes)
    packed = msgpack.packb(header, use_bin_type=True)
    rest = MAGIC + struct.pack(">I", len(packed)) + packed + data[start + length:-DIGEST_SIZE]
    return rest + hashlib.sha256(rest).digest()


@pytest.mark.parametrize("changes, message", [
    ({"version": 2}, "format version 2; this doozer reads version 1"),
    ({"format": "other"}, "another format"),
    ({"sections": ["store", "leases"]}, "sections"),
    ({"rev": 1}, "the header says rev 1"),
    ({"cluster": 7}, "'cluster' is missing or of the wrong type"),
])
def test_a_whole_backup_this_version_cannot_read_is_refused_by_name(changes: dict, message: str) -> None:
    data = _rewrite_header(backup.encode(small_store(), cluster="c"), **changes)
    with pytest.raises(BackupError, match=message):
        backup.decode(data)


# ---------------------------------------------------------------- property

_paths = st.sampled_from(["/a", "/b", "/a/b", "/c/d/e", "/c/f", "/ctl/x"])
_ops = st.one_of(
    st.tuples(st.just("set"), _paths, st.binary(max_size=40)),
    st.tuples(st.just("del"), _paths),
)


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(_ops, max_size=60), hist=st.integers(1, 30), cut=st.integers(0, 10**6),
       bit=st.integers(0, 7))
def test_random_stores_round_trip_and_damage_is_detected(ops: list, hist: int, cut: int, bit: int) -> None:
    store = Store(hist=hist)
    for op in ops:
        store.apply([S(op[1], op[2]) if op[0] == "set" else D(op[1])])
    data = backup.encode(store, cluster="c", node="n")
    assert everything(backup.decode(data).store) == everything(store)
    with pytest.raises(BackupError):
        backup.decode(data[:cut % len(data)])
    damaged = bytearray(data)
    damaged[cut % len(data)] ^= 1 << bit
    with pytest.raises(BackupError):
        backup.decode(bytes(damaged))
