"""The versioned tree: applied mutations, reads at a rev, watches.

Sans-I/O: no network, no time; Deferreds only to wait for a change or a rev
(:mod:`doozer.store.waiters`).

The head is two flat dicts (``path -> File``, ``directory -> entry names``),
so a read at the head is a dict lookup or two. History is per path, kept by
:mod:`doozer.store.history`: each path changed within the kept window has
``(rev, state)`` lists, so a read at an old rev is a lookup plus a bisect; a
directory also remembers which entries changed in the window. Copy-on-write
directory dicts were rejected: they copy a whole directory per write, and
with ``hist`` roots kept a directory of 10,000 files would cost gigabytes.
Here memory is the tree plus the window.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from twisted.internet.defer import Deferred, fail, succeed

from doozer.errors import DoozerError
from doozer.store import mutation as mut
from doozer.store import lease_verbs, txn
from doozer.store.cal import CAL_DIR, CAL_PREFIX, ordered_members, slot_number
from doozer.store.dedup import Dedup
from doozer.store.leases import Leases, Position
from doozer.store.history import DIR, HEAD, History, State
from doozer.store.path import compile_glob, glob_prefix, join, split, validate_path
from doozer.store.types import NO_KEY, Dir, Event, File, Outcome
from doozer.store.waiters import Waiters


class Store:
    """The versioned tree of one node.

    :param hist: revs of history kept at least (SPEC ``--hist``); reads and
        watches at ``oldest`` or later are answered.
    """

    def __init__(self, hist: int = 2000) -> None:
        #: the kept history: old states, events, ``oldest``
        self.history = History(hist)
        self.rev = 0
        #: the consensus instance whose application produced this store
        self.seqn = 0
        self._files: dict[str, File] = {}
        self._dirs: dict[str, set[str]] = {"/": set()}
        self._dedup = Dedup()
        #: the leases and the files attached to them (SPEC §9)
        self.leases = Leases()
        self.waiters = Waiters()
        # Bytes of paths and values of the files (the head); the history
        # counts its own (SPEC §12's quota counts both).
        self._live_bytes = 0
        # cal() is asked for on every write and every applied instance; it
        # is recomputed only after a change below /ctl/cal.
        self._cal: list[str] | None = None

    def apply(self, items: list[bytes], seqn: int | None = None) -> list[Outcome]:
        """Apply decided instance ``seqn``; return one outcome per item, in order.

        :param items: encoded :class:`~doozer.store.mutation.Mutation`s in decided
            order. Each takes the next rev, whether it succeeds, fails or is
            a NOP; an undecodable one too (failing with ``OTHER``). Two kinds
            take no rev and change nothing: an item decided after its
            deadline (``UNAVAILABLE``, not indeterminate: it never applies),
            and an item whose key is still in the de-duplication record
            (its original outcome, ``duplicate=True``). Watchers and rev
            waiters wake once the whole batch is applied.
        :param seqn: the instance (default: the one after :attr:`seqn`).
        """
        if seqn is None:
            seqn = self.seqn + 1
        self.seqn = seqn
        outcomes: list[Outcome] = []
        history = self.history
        log = history.log
        first_event = len(log)
        dedup = self._dedup
        for index, item in enumerate(items):
            try:
                mutation = mut.Mutation.decode(item)
            except mut.MalformedMutation as e:
                self.rev += 1
                outcomes.append(Outcome(self.rev, NO_KEY, DoozerError("OTHER", str(e))))
                continue
            if seqn > mutation.until:
                outcomes.append(
                    Outcome(self.rev, mutation.key, _expired(mutation, seqn), expired=True)
                )
                continue
            prior = dedup.get(mutation.key)
            if prior is not None:
                outcomes.append(replace(prior, duplicate=True))
                continue
            if mutation.kind in lease_verbs.NO_REV_KINDS:
                outcome = self._apply_norev(mutation, (seqn, index))
            else:
                self.rev += 1
                error = self._apply_one(mutation, self.rev, (seqn, index))
                outcome = Outcome(self.rev, mutation.key, error)
            dedup.add(mutation.key, outcome, mutation.until)
            outcomes.append(outcome)
        new_events = log[first_event:]
        dedup.expire(seqn)
        history.prune(self.rev)
        self.waiters.wake(new_events)
        self.waiters.wake_revs(self.rev)
        return outcomes

    def _apply_one(self, m: mut.Mutation, rev: int, pos: Position = (0, 0)) -> DoozerError | None:
        """Apply one decoded mutation at ``rev`` (at log position ``pos``);
        return its failure or None."""
        kind = m.kind
        if kind == mut.NOP:
            return None
        if kind != mut.SET and kind != mut.DEL:
            if kind == mut.TXN:
                return self._apply_txn(m, rev)
            if kind == mut.GRANT:
                return lease_verbs.grant(self, m, rev, pos)
            return lease_verbs.revoke(self, m, rev)
        try:
            path = validate_path(m.path)
        except DoozerError as e:
            return e
        # Order of checks: the shape of the tree, then the precondition, then
        # existence (DEL), then the CAL rules; every node runs the same.
        if path in self._dirs:
            return DoozerError("ISDIR", f"{path} is a directory")
        if m.kind == mut.SET:
            blocker = self._file_above(path)
            if blocker:
                return DoozerError("NOTDIR", f"{blocker} is a file, so {path} cannot be below it")
        current = self._files.get(path)
        current_rev = current.rev if current else 0
        if m.rev != mut.CLOBBER and current_rev > m.rev:
            detail = f"{path} is at rev {current_rev}, the write required rev <= {m.rev}"
            return DoozerError("REV_MISMATCH", detail, rev=current_rev)
        if m.kind == mut.DEL and current is None:
            return DoozerError("NOENT", f"{path} does not exist")
        for other, other_rev in m.compare:
            failed = self._compare_fails(other, other_rev)
            if failed is not None:
                return failed
        if path.startswith(CAL_PREFIX):
            refusal = self._cal_refusal(path, m.value if m.kind == mut.SET else None)
            if refusal:
                return DoozerError("FORBIDDEN", refusal)
        if m.lease:
            failed = lease_verbs.attach_refusal(self, path, m.lease)
            if failed is not None:
                return failed
        if m.kind == mut.SET:
            self._set(path, m.value, rev, current)
            self.leases.attach(path, m.lease or None)
        else:
            assert current is not None  # NOENT was returned above
            self._delete(path, rev, current)
            self.leases.detach(path)
        return None

    def _apply_norev(self, m: mut.Mutation, pos: Position) -> Outcome:
        """A RENEW, or an EXPIRE (which takes a rev only if it acts)."""
        if m.kind == mut.RENEW:
            return lease_verbs.renew(self, m, pos)
        return lease_verbs.expire(self, m)

    def _apply_txn(self, m: mut.Mutation, rev: int) -> DoozerError | None:
        """Apply a transaction's ops at ``rev``, all of them or, with the
        reason, none (:mod:`doozer.store.txn`)."""
        leases = self.leases
        why = txn.refusal(m, self._files, self._dirs, self._compare_fails,
                          lambda lease: leases.get(lease) is not None)
        if why is not None:
            return why
        for op in m.ops:
            current = self._files.get(op.path)
            if op.kind == mut.SET:
                self._set(op.path, op.value, rev, current)
                leases.attach(op.path, op.lease or None)
            else:
                assert current is not None  # refusal said it exists
                self._delete(op.path, rev, current)
                leases.detach(op.path)
        return None

    def _compare_fails(self, path: str, rev: int) -> DoozerError | None:
        """Why a further precondition ``(path, rev)`` does not hold, if it does not."""
        try:
            validate_path(path)
        except DoozerError as e:
            return e
        if path in self._dirs:
            return DoozerError("ISDIR", f"{path} is a directory; a precondition needs a file")
        current = self._files.get(path)
        current_rev = current.rev if current else 0
        if rev != mut.CLOBBER and current_rev > rev:
            detail = f"{path} is at rev {current_rev}, the write required rev <= {rev}"
            return DoozerError("REV_MISMATCH", detail, rev=current_rev, path=path)
        return None

    def _file_above(self, path: str) -> str | None:
        """The ancestor of ``path`` that is a file, if any."""
        cut = path.find("/", 1)
        while cut > 0:
            ancestor = path[:cut]
            if ancestor in self._files:
                return ancestor
            if ancestor not in self._dirs:
                return None  # nothing exists below a missing directory
            cut = path.find("/", cut + 1)
        return None

    def _cal_refusal(self, path: str, value: bytes | None) -> str | None:
        """Why a change of ``path`` below the CAL to ``value`` (None: a
        delete) is refused. Only canonical slot files may be written (a
        delete of anything else is allowed: it can only tidy up)."""
        number = slot_number(path[len(CAL_PREFIX) :])
        if number is None:
            return None if value is None else f"{path} is not a canonical CAL slot"
        before = self._cal_members()
        others = [member for n, member in before if n != number]
        if value and value.decode("utf-8", "replace") in others:
            return f"{value.decode('utf-8', 'replace')} already holds another CAL slot"
        if before and not others and not value:
            return "the change would leave the cluster with no member"
        return None

    def _cal_members(self) -> list[tuple[int, str]]:
        """``(slot number, member id)`` of the non-empty canonical slots, by number."""
        return ordered_members(self._cal_files())

    def _cal_files(self) -> list[tuple[str, bytes]]:
        """``(name, value)`` of every file directly in the CAL directory."""
        out = []
        for name in self._dirs.get(CAL_DIR, ()):
            f = self._files.get(f"{CAL_PREFIX}{name}")
            if f is not None:
                out.append((name, f.value))
        return out

    def _set(self, path: str, value: bytes, rev: int, old: File | None) -> None:
        """Write a file, creating its missing directories."""
        new = File(path, rev, value)
        if path.startswith(CAL_PREFIX):
            self._cal = None
        history = self.history
        history.changed(path, old, new, Event(rev, path, "set", value))
        self._files[path] = new
        self._live_bytes += len(path) + len(value) - (len(path) + len(old.value) if old else 0)
        if old is None:
            child = path
            while True:
                directory, name = split(child)
                entries = self._dirs.get(directory)
                if entries is not None:
                    entries.add(name)
                    break
                self._dirs[directory] = {name}
                history.record(directory, None, DIR, rev)
                child = directory

    def _delete(self, path: str, rev: int, old: File) -> None:
        """Remove a file and the directories it leaves empty."""
        del self._files[path]
        self._live_bytes -= len(path) + len(old.value)
        if path.startswith(CAL_PREFIX):
            self._cal = None
        history = self.history
        history.changed(path, old, None, Event(rev, path, "del", None))
        child = path
        while True:
            directory, name = split(child)
            entries = self._dirs[directory]
            entries.discard(name)
            if entries or directory == "/":
                break
            del self._dirs[directory]
            history.record(directory, DIR, None, rev)
            child = directory

    def _check_rev(self, rev: int | None) -> int:
        """The rev to read at; TOO_LATE when too old, ValueError when not yet applied."""
        if rev is None:
            return self.rev
        if rev > self.rev:
            raise ValueError(f"rev {rev} is not applied yet (at {self.rev}); wait_rev first")
        self.history.check_not_too_late(rev)
        return rev

    def check_not_too_late(self, rev: int) -> None:
        """Raise TOO_LATE (with ``oldest``) when ``rev`` is older than the history kept."""
        self.history.check_not_too_late(rev)

    def _state(self, path: str, rev: int) -> State:
        """What ``path`` was at ``rev`` (a checked rev)."""
        if rev < self.rev:
            state = self.history.at(path, rev)
            if state is not HEAD:
                return state
        f = self._files.get(path)
        if f is not None:
            return f
        return DIR if path in self._dirs else None

    def _entries(self, path: str, rev: int) -> list[str]:
        """Sorted entry names of directory ``path`` at ``rev`` (it is one then)."""
        names = self._dirs.get(path, set())
        if rev < self.rev:
            touched = self.history.touched(path)
            if touched:
                # Untouched entries are as at the head; only the touched ones
                # (few, even in a huge directory) need a look at history.
                names = (names - touched) | {
                    n for n in touched if self._state(join(path, n), rev) is not None
                }
        return sorted(names)

    def get(self, path: str, rev: int | None = None) -> File | Dir:
        """The file or directory at ``path`` as of ``rev`` (default: head).

        :raises DoozerError: ``NOENT``, ``TOO_LATE``, ``BAD_PATH``.
        :raises ValueError: ``rev`` is newer than :attr:`rev`.
        """
        if rev is None or rev == self.rev:
            f = self._files.get(path)
            if f is not None:
                return f
        # Off the fast path: path syntax answers before the rev (SPEC §3).
        validate_path(path)
        rev = self._check_rev(rev)
        state = self._state(path, rev)
        if isinstance(state, File):
            return state
        if state is DIR:
            return Dir(path, self._entries(path, rev))
        raise DoozerError("NOENT", f"{path} does not exist at rev {rev}")

    def getdir(self, path: str, rev: int | None = None) -> list[str]:
        """Sorted entry names of directory ``path`` as of ``rev``.

        :raises DoozerError: ``NOENT``, ``NOTDIR``, ``TOO_LATE``, ``BAD_PATH``.
        """
        node = self.get(path, rev)
        if isinstance(node, File):
            raise DoozerError("NOTDIR", f"{path} is a file")
        return node.entries

    def walk(self, glob: str, rev: int | None = None) -> list[File]:
        """Every file matching ``glob`` as of ``rev``, in path order.

        Path order is component by component (a directory's files before
        its sibling ``a-b`` when the directory is ``a``), as doozerd walks.

        :raises DoozerError: ``BAD_GLOB``, ``TOO_LATE``.
        """
        match = compile_glob(glob)
        rev = self._check_rev(rev)
        start = glob_prefix(glob)
        state = self._state(start, rev)
        if isinstance(state, File):
            return [state] if match(start) else []
        if state is None:
            return []
        return [f for f in self._walk_files(start, rev) if match(f.path)]

    def _walk_files(self, directory: str, rev: int) -> Iterator[File]:
        """Every file below ``directory`` at ``rev``, depth first, names sorted."""
        for name in self._entries(directory, rev):
            path = join(directory, name)
            state = self._state(path, rev)
            if isinstance(state, File):
                yield state
            elif state is DIR:
                yield from self._walk_files(path, rev)

    def outcome_of(self, key: tuple[str, int]) -> Outcome | None:
        """The outcome of the mutation with ``key`` while the de-duplication
        record holds it (until its deadline; kept in snapshots too), else None."""
        return self._dedup.get(key)

    def cal(self) -> list[str]:
        """Member ids of the non-empty canonical ``/ctl/cal/<n>`` slots, by
        slot number: ``M(s)`` as this store defines it."""
        cal = self._cal
        if cal is None:
            cal = self._cal = [member for _, member in self._cal_members()]
        return list(cal)

    def cal_slots(self) -> list[tuple[int, str]]:
        """``(slot number, member id or "")`` of every canonical CAL slot,
        empty ones included, by number (a non-canonical name is no slot)."""
        slots = []
        for name, value in self._cal_files():
            number = slot_number(name)
            if number is not None:
                slots.append((number, value.decode("utf-8", "replace")))
        return sorted(slots)

    def events(self, glob: str, from_rev: int, limit: int) -> list[Event]:
        """The first ``limit`` changes to files matching ``glob`` with rev >= ``from_rev``.

        :raises DoozerError: ``BAD_GLOB``; ``TOO_LATE`` when ``from_rev`` is
            older than :attr:`oldest`.
        """
        match = compile_glob(glob)
        history = self.history
        history.check_not_too_late(from_rev)
        return history.events(match, from_rev, limit)

    def watch(self, glob: str, from_rev: int, limit: int) -> Deferred[list[Event]]:
        """Wait for changes to files matching ``glob`` with rev >= ``from_rev``.

        Fires with :meth:`events` as soon as at least one exists (at once if
        one is already in the log). Cancelling the Deferred removes the
        waiter at once. Errors (``BAD_GLOB``, ``TOO_LATE``) come as a failed
        Deferred.

        :param limit: at most this many events (>= 1).
        """
        if limit < 1:
            return fail(ValueError("limit must be at least 1"))
        try:
            found = self.events(glob, from_rev, limit)
        except DoozerError as e:
            return fail(e)
        if found:
            return succeed(found)
        return self.waiters.watch(glob, from_rev, limit)

    def watcher_count(self) -> int:
        """How many watches are waiting (for tests and metrics)."""
        return self.waiters.watch_count()

    def wait_rev(self, rev: int) -> Deferred[int]:
        """A Deferred firing with :attr:`rev` once ``self.rev >= rev``; cancellable."""
        if self.rev >= rev:
            return succeed(self.rev)
        return self.waiters.wait_rev(rev)

    def adopt(self, other: "Store") -> None:
        """Take on ``other``'s contents in place (a node installing a snapshot).

        Waiting rev readers stay and wake if the new rev reaches theirs.
        Waiting watches that the new history still covers stay (or fire at
        once with what the snapshot brought); older ones fail with
        ``TOO_LATE`` so their clients re-read and watch on.
        """
        for name in _CONTENTS:
            setattr(self, name, getattr(other, name))
        self.waiters.rewatch(
            self.events,
            self.oldest,
            lambda: DoozerError(
                "TOO_LATE",
                "this node caught up from a snapshot; re-read and watch from its rev",
                oldest=self.oldest,
            ),
        )
        self.waiters.wake_revs(self.rev)

    @property
    def oldest(self) -> int:
        """The oldest rev answered: reads and watches from an older one are
        ``TOO_LATE``."""
        return self.history.oldest

    @property
    def size(self) -> int:
        """Bytes of paths and values the store holds: its files, and the
        changes kept in its history window (what ``--quota-bytes`` bounds)."""
        return self._live_bytes + self.history.bytes

    @property
    def file_count(self) -> int:
        """How many files the store holds at its head."""
        return len(self._files)

    @property
    def hist(self) -> int:
        """Revs of history kept (``--hist``)."""
        return self.history.keep


#: What a store holds besides its waiters: what :meth:`Store.adopt` takes on.
_CONTENTS = ("rev", "seqn", "history", "_files", "_dirs", "_dedup", "leases", "_live_bytes",
             "_cal")


def _expired(m: mut.Mutation, seqn: int) -> DoozerError:
    """The outcome of a mutation decided after its deadline (never applied)."""
    return DoozerError(
        "UNAVAILABLE",
        f"the write was not committed: it could be decided only by instance "
        f"{m.until}, and came up at {seqn}; it changed nothing and is safe to retry",
        indeterminate=False,
    )
