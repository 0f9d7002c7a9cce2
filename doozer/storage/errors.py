"""Why a data dir cannot be used: damaged, someone else's, or unwritable."""

from __future__ import annotations

from typing import Optional

#: What an operator does about a data dir that cannot be trusted.
WIPE_AND_REJOIN = "wipe the data dir and rejoin the cluster as a new node"


class StorageError(Exception):
    """A data dir the node must not run from (at start-up or while running)."""


class DamagedStorage(StorageError):
    """A file of the data dir holds something no crash can explain.

    The message is one line: the file, the offset (when there is one), what
    is wrong, and what to do.

    :param path: the damaged file.
    :param problem: what is wrong, e.g. ``"bad CRC"``.
    :param offset: the byte offset of the damage, or None for the whole file.
    """

    def __init__(self, path: str, problem: str, offset: Optional[int] = None) -> None:
        where = path if offset is None else f"{path} at offset {offset}"
        super().__init__(f"damaged storage: {where}: {problem}; {WIPE_AND_REJOIN}")
        self.path = path
        self.problem = problem
        self.offset = offset


class ForeignDataDir(StorageError):
    """The data dir belongs to another cluster or another node.

    :param directory: the data dir.
    :param problem: whose it is and whose it should be.
    """

    def __init__(self, directory: str, problem: str) -> None:
        super().__init__(
            f"data dir {directory} is not this node's: {problem}; point --data-dir "
            f"at this node's own dir, or {WIPE_AND_REJOIN}"
        )
        self.directory = directory
        self.problem = problem


class StorageFailed(StorageError):
    """Writing or syncing failed: nothing written after this is known to be safe.

    The node must stop voting and exit (SPEC §8); it never serves from state
    it could not save.

    :param path: the file being written.
    :param cause: the error the write or fsync raised.
    """

    def __init__(self, path: str, cause: BaseException) -> None:
        super().__init__(
            f"storage failed: {path}: {cause}; nothing after this is saved, "
            f"so the node stops voting and exits (free space or fix the disk, then restart it)"
        )
        self.path = path
        self.cause = cause
