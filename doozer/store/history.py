"""The history window of a store: what it remembers of its last revs.

A :class:`~doozer.store.tree.Store` holds its head as flat dicts; this holds
the rest, for the last ``hist`` revs at least (SPEC ``--hist``): per path
changed in the window, ``(rev, state)`` lists, so a read at an old rev is a
lookup plus a bisect; per directory, which entries changed in the window
(the others read as at the head, however big the directory); the events
watchers see; and the bytes those events hold (SPEC §12's quota counts
them). Pruning goes a batch of revs at a time, so its cost is spread over
many applies.

Kept apart from the tree so that the tree's rules and the window's
bookkeeping can be read, and tested, each on its own. Sans-I/O.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from typing import Any, Callable, Union

from doozer.errors import DoozerError
from doozer.store.path import split
from doozer.store.types import Event, File

#: The state of a path that is a directory, in history lists.
DIR: Any = object()
#: What :meth:`History.at` answers for a path unchanged since the rev asked:
#: the head says what it was.
HEAD: object = object()
#: A path's state at a rev: a :class:`File`, :data:`DIR`, or None (absent).
State = Union[File, object, None]


class History:
    """The changes of a store's last ``keep`` revs (at least).

    The store tells it each change as it applies it (:meth:`record`,
    :meth:`changed`) and its new head rev after each batch (:meth:`prune`).

    :param keep: revs of history kept at least; reads and watches at
        :attr:`oldest` or later are answered.
    """

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError("hist must be at least 1")
        self.keep = keep
        #: the oldest rev answered; older is ``TOO_LATE``
        self.oldest = 0
        #: the events of the window, in rev order
        self.log: list[Event] = []
        #: bytes of paths and values in :attr:`log`
        self.bytes = 0
        self._log_revs: list[int] = []
        self._prune_batch = max(1, keep // 4)
        # path -> ([rev, ...], [state, ...]); state i holds for revs
        # [revs[i], revs[i+1]); revs[0] is 0, meaning "since before oldest".
        self._paths: dict[str, tuple[list[int], list[State]]] = {}
        # directory -> names of its entries that have a history list.
        self._touched: dict[str, set[str]] = {}
        self._changes: deque[tuple[int, str]] = deque()  # (rev, path) for pruning

    def record(self, path: str, old: State, new: State, rev: int) -> None:
        """Remember that ``path`` went from ``old`` to ``new`` at ``rev``."""
        history = self._paths.get(path)
        if history is None:
            history = self._paths[path] = ([0], [old])
            directory, name = split(path)
            self._touched.setdefault(directory, set()).add(name)
        history[0].append(rev)
        history[1].append(new)
        self._changes.append((rev, path))

    def changed(self, path: str, old: File | None, new: File | None, event: Event) -> None:
        """Remember that file ``path`` went from ``old`` to ``new``, as ``event``
        tells watchers: :meth:`record` and :meth:`add_event` in one call (a
        write's hot path)."""
        rev = event.rev
        history = self._paths.get(path)
        if history is None:
            history = self._paths[path] = ([0], [old])
            directory, name = split(path)
            self._touched.setdefault(directory, set()).add(name)
        history[0].append(rev)
        history[1].append(new)
        self._changes.append((rev, path))
        self.log.append(event)
        self._log_revs.append(rev)
        value = event.value
        self.bytes += len(path) + (len(value) if value is not None else 0)

    def add_event(self, event: Event) -> None:
        """Keep ``event`` for watchers, with no change of state (a snapshot's
        event at its base rev: the base tree already holds it)."""
        self.log.append(event)
        self._log_revs.append(event.rev)
        self.bytes += _event_bytes(event)

    def prune(self, head: int) -> None:
        """Forget history older than :attr:`keep` revs before ``head``, a batch
        at a time."""
        new_oldest = head - self.keep + 1
        if new_oldest - self.oldest < self._prune_batch:
            return
        changes = self._changes
        while changes and changes[0][0] <= new_oldest:
            path = changes.popleft()[1]
            history = self._paths.get(path)
            if history is None:
                continue  # already pruned via an earlier change record
            revs, states = history
            keep_from = bisect_right(revs, new_oldest) - 1
            if keep_from > 0:
                del revs[:keep_from]
                del states[:keep_from]
                revs[0] = 0
            if len(revs) == 1:  # unchanged in the window: the head says it all
                del self._paths[path]
                directory, name = split(path)
                touched = self._touched[directory]
                touched.discard(name)
                if not touched:
                    del self._touched[directory]
        cut = bisect_left(self._log_revs, new_oldest)
        self.bytes -= sum(_event_bytes(e) for e in self.log[:cut])
        del self.log[:cut]
        del self._log_revs[:cut]
        self.oldest = new_oldest

    def restart(self, oldest: int) -> None:
        """Forget every change: what the store holds now is where history
        starts, at ``oldest`` (a store being loaded from a snapshot)."""
        for kept in (self._paths, self._touched, self._changes, self.log, self._log_revs):
            kept.clear()
        self.bytes = 0
        self.oldest = oldest

    def check_not_too_late(self, rev: int) -> None:
        """Raise TOO_LATE (with ``oldest``) when ``rev`` is older than the history kept."""
        if rev < self.oldest:
            detail = f"rev {rev} is older than the kept history"
            raise DoozerError("TOO_LATE", detail, oldest=self.oldest)

    def at(self, path: str, rev: int) -> State:
        """What ``path`` was at ``rev`` (a kept rev), or :data:`HEAD` when it
        has not changed since."""
        history = self._paths.get(path)
        if history is not None:
            revs = history[0]
            if rev < revs[-1]:
                return history[1][bisect_right(revs, rev) - 1]
        return HEAD

    def touched(self, directory: str) -> set[str] | None:
        """Names of the entries of ``directory`` that changed in the window
        (None or empty: none did)."""
        return self._touched.get(directory)

    def kept_paths(self) -> set[str]:
        """The paths that changed in the window (have a history list)."""
        return set(self._paths)

    def events(self, match: Callable[[str], bool], from_rev: int, limit: int) -> list[Event]:
        """The first ``limit`` kept events with rev >= ``from_rev`` whose path
        ``match`` accepts (``from_rev`` already checked: not too late), and
        the rest of the last one's rev: :func:`whole_revs`."""
        found: list[Event] = []
        log = self.log
        full_at = None  # once ``limit`` are found: the rev they end in
        for i in range(bisect_left(self._log_revs, from_rev), len(log)):
            event = log[i]
            if full_at is not None and event.rev != full_at:
                break  # a transaction's events are never split (SPEC §10)
            if match(event.path):
                found.append(event)
                if full_at is None and len(found) >= limit:
                    full_at = event.rev
        return found


def whole_revs(events: list[Event], limit: int) -> list[Event]:
    """The first ``limit`` of ``events`` (in rev order) and any after them
    at the last one's rev: a transaction's changes share one rev, and a
    watcher that resumes at ``next`` = that rev + 1 must not miss the rest."""
    if len(events) <= limit:
        return events
    end = limit
    last = events[limit - 1].rev
    while end < len(events) and events[end].rev == last:
        end += 1
    return events[:end]


def _event_bytes(e: Event) -> int:
    return len(e.path) + (len(e.value) if e.value is not None else 0)
