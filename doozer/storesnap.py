"""Store snapshots: the tree with its kept history as msgpack, and a node
taking on a peer's store in place.

A mixin of :class:`doozer.store.Store`, kept apart to keep the store module
small; it works on the store's own fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from doozer.errors import DoozerError
from doozer.path import validate_path
from doozer.storetypes import Event, Outcome

if TYPE_CHECKING:
    from doozer.store import Store


class StoreSnapshots:
    """:meth:`snapshot`, :meth:`from_snapshot` and :meth:`adopt`."""

    def adopt(self, other: "Store") -> None:
        """Take on ``other``'s contents in place (a node installing a snapshot).

        Waiting rev readers stay and wake if the new rev reaches theirs.
        Waiting watches that the new history still covers stay (or fire at
        once with what the snapshot brought); older ones fail with
        ``TOO_LATE`` so their clients re-read and watch on.
        """
        watchers = self._watchers
        keep = {"_watchers": {}, "_rev_waiters": self._rev_waiters, "_rev_heap": self._rev_heap}
        self.__dict__.update(other.__dict__)
        self.__dict__.update(keep)
        too_late = []
        for prefix, bucket in watchers.items():
            for d, (glob, from_rev, limit) in bucket.items():
                if from_rev < self.oldest:
                    too_late.append(d)
                    continue
                found = self.events(glob, from_rev, limit)
                if found:
                    d.callback(found)
                else:
                    self._watchers.setdefault(prefix, {})[d] = (glob, from_rev, limit)
        for d in too_late:
            d.errback(
                DoozerError(
                    "TOO_LATE",
                    "this node caught up from a snapshot; re-read and watch from its rev",
                    oldest=self.oldest,
                )
            )
        self._wake_rev_waiters()

    def snapshot(self) -> bytes:
        """The store with its kept history, as msgpack.

        It holds the tree at :attr:`oldest` plus every change since, so a
        node built from it answers reads at old revs and watches from them
        exactly as this one does (a watch may move to it without TOO_LATE).
        """
        base = self.oldest
        files = [[f.path, f.rev, f.value] for f in self.walk("/**", base)] if base >= 1 else []
        # The change at ``base`` itself is in the base tree, but a watch from
        # ``base`` must still see it as an event.
        events = [[e.rev, e.path, e.op, e.value] for e in self._events if e.rev >= base]
        keys = []
        for key, o, until in self._dedup.entries():
            error = [o.error.code, o.error.detail, o.error.extra] if o.error else None
            keys.append([key[0], key[1], o.rev, error, until])
        doc = {"version": 3, "base": base, "rev": self.rev, "seqn": self.seqn,
               "files": files, "events": events, "keys": keys}
        return msgpack.packb(doc, use_bin_type=True)

    @classmethod
    def from_snapshot(cls, data: bytes, hist: int = 2000) -> "Store":
        """A store holding what :meth:`snapshot` saved, history included.

        :raises ValueError: when ``data`` is not a snapshot.
        """
        try:
            doc: dict[str, Any] = msgpack.unpackb(data, raw=False)
            if doc.get("version") != 3:
                raise ValueError("unknown snapshot version")
            store = cls(hist)
            for path, rev, value in doc["files"]:
                store._set(validate_path(path), value, rev, store._files.get(path))
            # The base tree is where history starts, not history itself.
            for kept in (store._hist, store._touched, store._changes, store._events,
                         store._event_revs):
                kept.clear()
            store.rev = store.oldest = doc["base"]
            for rev, path, op, value in doc["events"]:
                if rev == store.oldest and rev >= 1:
                    store._events.append(Event(rev, validate_path(path), op, value))
                    store._event_revs.append(rev)
                    continue
                if rev <= store.rev:
                    raise ValueError("events out of order")
                store.rev = rev
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
            store._history_bytes = sum(len(e.path) + len(e.value or b"") for e in store._events)
            store.seqn = doc["seqn"]
            if type(store.seqn) is not int or store.seqn < 0:
                raise ValueError("bad seqn")
            for origin, request, rev, error, until in doc["keys"]:
                err = DoozerError(error[0], error[1], **error[2]) if error else None
                store._dedup.add((origin, request), Outcome(rev, (origin, request), err), until)
        except (ValueError, KeyError, TypeError, DoozerError) as e:
            raise ValueError(f"not a store snapshot: {e}") from None
        return store
