"""Store snapshots as plain functions: the tree with its kept history as
msgpack (:func:`dump`, or in pieces: :func:`dump_chunks`), and a store made
from one (:func:`load`).

A snapshot holds the tree at the store's oldest kept rev plus every change
since, the instance (seqn) that produced it, and the de-duplication record,
so a node built from it answers reads at old revs and watches from them
exactly as the one that made it, and de-duplicates the same requests.
"""

from __future__ import annotations

from typing import Any, Iterator

import msgpack

from doozer.errors import DoozerError
from doozer.store.path import validate_path
from doozer.store.leases import Leases
from doozer.store.tree import Store
from doozer.store.types import Event, File, Outcome


def dump(store: Store, *, keys: bool = True) -> bytes:
    """``store`` with its kept history, as msgpack.

    It holds the tree at the oldest kept rev plus every change since, so a
    node built from it answers reads at old revs and watches from them
    exactly as this one does (a watch may move to it without TOO_LATE).

    :param keys: include the de-duplication record (a peer needs it; a
        backup, restored as a new cluster, does not).
    """
    head, files, events, dedup, leases = _capture(store, keys)
    doc: dict[str, Any] = dict(head)
    doc["files"] = [[f.path, f.rev, f.value] for f in files]
    doc["events"] = [[e.rev, e.path, e.op, e.value] for e in events]
    doc["keys"] = dedup
    doc["leases"] = leases
    packed: bytes = msgpack.packb(doc, use_bin_type=True)
    return packed


def dump_chunks(store: Store, *, keys: bool = True) -> Iterator[bytes]:
    """:func:`dump`'s bytes, in pieces made as they are asked for.

    What goes in is taken from ``store`` now, at one rev (references to its
    immutable files and events, no copy of their values); the packing
    happens as the pieces are asked for, so a caller can spread it over
    many reactor turns while the store moves on. Joined, the pieces are
    exactly :func:`dump`'s bytes.
    """
    return _pack_pieces(*_capture(store, keys))


def _capture(store: Store, keys: bool
             ) -> tuple[dict[str, int], list[File], list[Event], list[Any], list[Any]]:
    """What a snapshot of ``store`` holds, as it is now (one rev)."""
    base = store.oldest
    files = store.walk("/**", base) if base >= 1 else []
    # The change at ``base`` itself is in the base tree, but a watch from
    # ``base`` must still see it as an event.
    events = [e for e in store.history.log if e.rev >= base]
    dedup = []
    if keys:
        for key, o, until in store._dedup.entries():
            error = [o.error.code, o.error.detail, o.error.extra] if o.error else None
            row = [key[0], key[1], o.rev, error, until]
            if o.norev:  # a lease verb's answer: which leases it found gone
                row.append(list(o.gone))
            dedup.append(row)
    head = {"version": 3, "base": base, "rev": store.rev, "seqn": store.seqn}
    return head, files, events, dedup, store.leases.dump()


def _pack_pieces(head: dict[str, int], files: list[File], events: list[Event],
                 dedup: list[Any], leases: list[Any]) -> Iterator[bytes]:
    # The same map, in the same order, as msgpack.packb(doc) in dump().
    packer = msgpack.Packer(use_bin_type=True)
    opening = [packer.pack_map_header(len(head) + 4)]
    for name, value in head.items():
        opening += [packer.pack(name), packer.pack(value)]
    opening += [packer.pack("files"), packer.pack_array_header(len(files))]
    yield b"".join(opening)
    for f in files:
        yield packer.pack([f.path, f.rev, f.value])
    yield packer.pack("events") + packer.pack_array_header(len(events))
    for e in events:
        yield packer.pack([e.rev, e.path, e.op, e.value])
    yield packer.pack("keys") + packer.pack(dedup)
    yield packer.pack("leases") + packer.pack(leases)


def _load_base(store: Store, files: list[Any]) -> None:
    """Put the base tree (the files at the oldest kept rev) into the new,
    empty ``store``: its files and their directories, and no history (the
    base is where history starts).

    Written out rather than ``Store._set`` per file, which records each as
    a change and made loading 100,000 files take a second, mostly to build
    history that was thrown away again (docs/benchmarks.md, "Restart").

    :raises ValueError: a malformed entry, a path twice, or a path that is
        a file in one entry and a directory in another.
    """
    by_path = store._files
    dirs = store._dirs
    live = 0
    for path, rev, value in files:
        validate_path(path)
        if type(rev) is not int or type(value) is not bytes:
            raise ValueError(f"a file entry of {path} with a rev {rev!r} or value of the wrong type")
        if path in by_path or path in dirs:
            raise ValueError(f"{path} twice, or a file and a directory")
        by_path[path] = File(path, rev, value)
        live += len(path) + len(value)
        child = path
        while True:  # its directories, up to the first one that exists
            cut = child.rfind("/")
            directory, name = (child[:cut] if cut > 0 else "/"), child[cut + 1:]
            entries = dirs.get(directory)
            if entries is not None:
                entries.add(name)
                break
            if directory in by_path:
                raise ValueError(f"{directory} is a file and a directory")
            dirs[directory] = {name}
            child = directory
    store._live_bytes += live
    store._cal = None


def load(data: bytes | memoryview, hist: int = 2000) -> Store:
    """A store holding what :func:`dump` saved, history included.

    :raises ValueError: when ``data`` is not a snapshot.
    """
    try:
        doc: dict[str, Any] = msgpack.unpackb(data, raw=False)
        if doc.get("version") != 3:
            raise ValueError("unknown snapshot version")
        store = Store(hist)
        _load_base(store, doc["files"])
        # The base tree is where history starts, not history itself.
        store.history.restart(doc["base"])
        store.rev = doc["base"]
        last = None  # the rev of the last change replayed
        for rev, path, op, value in doc["events"]:
            if rev == store.oldest and rev >= 1:
                store.history.add_event(Event(rev, validate_path(path), op, value))
                continue
            # A transaction's changes share one rev (SPEC §10); else revs rise.
            if rev < store.rev or (rev == store.rev and rev != last):
                raise ValueError("events out of order")
            store.rev = last = rev
            old = store._files.get(validate_path(path))
            if op == "set":
                store._set(path, value, rev, old)
            elif old is not None:
                store._delete(path, rev, old)
            else:
                raise ValueError(f"delete of missing {path}")
        if doc["rev"] < store.rev:
            raise ValueError("rev below its events")
        store.rev = doc["rev"]
        store.seqn = doc["seqn"]
        if type(store.seqn) is not int or store.seqn < 0:
            raise ValueError("bad seqn")
        for row in doc["keys"]:
            origin, request, rev, error, until = row[:5]
            err = DoozerError(error[0], error[1], **error[2]) if error else None
            outcome = Outcome(rev, (origin, request), err)
            if len(row) == 6:  # a lease verb's, which took no rev
                outcome = Outcome(rev, (origin, request), err, norev=True,
                                  gone=tuple(str(i) for i in row[5]))
            store._dedup.add((origin, request), outcome, until)
        # Snapshots made before leases hold none.
        store.leases = Leases.load(doc.get("leases", []), store._files)
    except (ValueError, KeyError, TypeError, DoozerError) as e:
        raise ValueError(f"not a store snapshot: {e}") from None
    return store
