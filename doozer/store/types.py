"""The values the store hands out: files and directories as read, the
events watchers see, and the outcome of each applied mutation.

Kept apart from :mod:`doozer.store` (which re-exports them) so that the
snapshot code can use them without importing the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from doozer.errors import DoozerError

#: The key reported for an item that could not be decoded (it has none).
NO_KEY: tuple[str, int] = ("", 0)


@dataclass(frozen=True)
class Event:
    """One applied change that watchers see (successful SET/DEL only)."""

    rev: int  # the rev the change took
    path: str  # the file changed
    op: str  # "set" or "del"
    value: bytes | None  # the new body; None for "del"


@dataclass(frozen=True)
class Outcome:
    """The result of one applied mutation, for its proposer.

    ``error`` is ``None`` on success, else ``REV_MISMATCH`` (with ``rev=``),
    ``ISDIR``, ``NOTDIR``, ``NOENT``, ``BAD_PATH``, ``FORBIDDEN``, ``OTHER``,
    or ``UNAVAILABLE`` (not indeterminate) for a mutation decided after its
    deadline, which took no rev.
    ``duplicate`` is true when the item's key had already been applied: it
    was skipped, took no rev, and this repeats the original outcome;
    ``expired`` when it was decided after its deadline (also no rev);
    ``norev`` for a RENEW, or an EXPIRE that changed nothing (applied, no rev).
    """

    rev: int  # the rev it took (a duplicate: the original's; expired: none, the store's)
    key: tuple[str, int]  # (origin, request); NO_KEY for an undecodable item
    error: DoozerError | None
    duplicate: bool = False
    expired: bool = False  # decided after its deadline: refused, took no rev
    #: a RENEW, or an EXPIRE that changed nothing: applied, took no rev
    norev: bool = False
    #: the leases a RENEW or EXPIRE found gone (or, for EXPIRE, renewed since)
    gone: tuple[str, ...] = ()

    @property
    def took_rev(self) -> bool:
        """Whether applying it took a rev (not a duplicate, not expired, not
        a lease verb that takes none)."""
        return not (self.duplicate or self.expired or self.norev)


@dataclass(frozen=True)
class File:
    """A file as read at some rev: its path, the rev that wrote it, its body."""

    path: str
    rev: int
    value: bytes


@dataclass(frozen=True)
class Dir:
    """A directory as read at some rev: its path and sorted entry names."""

    path: str
    entries: list[str]
