"""Transactions in the store (SPEC §10): every compare holds and every op can
be applied, in order, or nothing changes.

The store applies a transaction in two steps: :func:`refusal` decides, from
the tree as it is and without changing anything, whether the ops would all
apply one after the other (an :class:`Overlay` stands for the tree as the
earlier ops leave it); only then does the store apply them, all at one rev.
So a failed transaction never has to be undone.

The checks, in the order every node runs them: each compare in turn (the
first that fails answers, with its ``index``), then each op in turn: its
path, no CAL slot and no ``/ctl/lease`` file (a CAL change goes on its own,
under the CAL's rules; leases are the lease verbs' business), a path
named twice; then the shape of the tree (``ISDIR``, ``NOTDIR``), existence
for a ``del`` (``NOENT``), and for a ``set`` with a lease that the lease
exists (``NOENT`` naming it).
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

from doozer.errors import DoozerError
from doozer.store import mutation as mut
from doozer.store.cal import CAL_PREFIX
from doozer.store.leases import LEASE_DIR
from doozer.store.path import join, validate_path
from doozer.store.types import File


class Overlay:
    """The tree as a transaction's earlier ops would leave it.

    :param files: the store's files (path -> File), not changed.
    :param dirs: the store's directories (path -> entry names), not changed.
    """

    def __init__(self, files: Mapping[str, File], dirs: Mapping[str, set[str]]) -> None:
        self._files = files
        self._dirs = dirs
        self.added: set[str] = set()
        self.deleted: set[str] = set()

    def is_file(self, path: str) -> bool:
        return path in self.added or (path in self._files and path not in self.deleted)

    def is_dir(self, path: str) -> bool:
        """A directory is there while a file is below it."""
        below = path.rstrip("/") + "/"
        if any(p.startswith(below) for p in self.added):
            return True
        return path in self._dirs and self._holds_a_file(path)

    def _holds_a_file(self, directory: str) -> bool:
        # Stops at the first file not deleted: it visits at most the
        # deleted files (at most MAX_OPS) and the directories above them
        # before it finds one.
        for name in self._dirs.get(directory, ()):
            child = join(directory, name)
            if child in self._files:
                if child not in self.deleted:
                    return True
            elif self._holds_a_file(child):
                return True
        return False

    def file_above(self, path: str) -> Optional[str]:
        cut = path.find("/", 1)
        while cut > 0:
            if self.is_file(path[:cut]):
                return path[:cut]
            cut = path.find("/", cut + 1)
        return None


def refusal(
    m: mut.Mutation,
    files: Mapping[str, File],
    dirs: Mapping[str, set[str]],
    compare_fails: Callable[[str, int], Optional[DoozerError]],
    lease_exists: Callable[[str], bool],
) -> Optional[DoozerError]:
    """Why the transaction ``m`` cannot apply (its first failure, with the
    ``index`` of its compare or op), or None when it applies whole."""
    for index, (path, rev) in enumerate(m.compare):
        failed = compare_fails(path, rev)
        if failed is not None:
            return _at(failed, index, path, "compare")
    overlay = Overlay(files, dirs)
    seen: set[str] = set()
    for index, op in enumerate(m.ops):
        try:
            path = validate_path(op.path)
        except DoozerError as e:
            return _at(e, index, op.path, "ops")
        why = _op_refusal(op, path, overlay, seen, lease_exists)
        if why is not None:
            return _at(why, index, path, "ops")
        seen.add(path)
        if op.kind == mut.SET:
            overlay.added.add(path)
        else:
            overlay.deleted.add(path)
    return None


def _op_refusal(op: mut.Op, path: str, overlay: Overlay, seen: set[str],
                lease_exists: Callable[[str], bool]) -> Optional[DoozerError]:
    if path.startswith(CAL_PREFIX):
        return DoozerError("FORBIDDEN", f"{path}: a transaction does not change CAL slots; "
                           "write the slot on its own")
    if path == LEASE_DIR or path.startswith(LEASE_DIR + "/"):
        return DoozerError("FORBIDDEN", f"{path}: leases change through /v1/lease")
    if path in seen:
        return DoozerError("BAD_ARG", f"{path} is named by two ops")
    if overlay.is_dir(path):
        return DoozerError("ISDIR", f"{path} is a directory")
    if op.kind == mut.SET:
        blocker = overlay.file_above(path)
        if blocker:
            return DoozerError("NOTDIR", f"{blocker} is a file, so {path} cannot be below it")
        if op.lease and not lease_exists(op.lease):
            return DoozerError("NOENT", f"lease {op.lease} does not exist", lease=op.lease)
    elif not overlay.is_file(path):
        return DoozerError("NOENT", f"{path} does not exist")
    return None


def _at(error: DoozerError, index: int, path: str, where: str) -> DoozerError:
    """``error`` with the ``index`` and ``path`` of what failed, and ``in``:
    ``"compare"`` or ``"ops"``, the list ``index`` counts in (an ``ISDIR``
    may be a compare's or an op's)."""
    return DoozerError(error.code, error.detail,
                       **{**error.extra, "index": index, "path": path, "in": where})
