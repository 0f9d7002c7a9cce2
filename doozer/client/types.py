"""The values the client returns: files, directories, stats, walks, events.

Values travel as JSON text (SPEC §3) and are always handed out as ``bytes``:
:func:`decode_value` undoes the base64 the node uses for non-UTF-8 bytes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class File:
    """A file: its path, its rev (the rev that last wrote it) and its bytes."""

    path: str
    rev: int
    value: bytes


@dataclass(frozen=True)
class Dir:
    """A directory: its sorted entry names, as of store rev ``rev``."""

    path: str
    rev: int
    entries: list[str]


@dataclass(frozen=True)
class Stat:
    """STAT: ``dir`` and ``len`` (bytes, or entries of a directory); a file's rev.

    ``rev`` is ``None`` for a directory (the API gives none).
    """

    path: str
    dir: bool
    len: int
    rev: Optional[int]


@dataclass(frozen=True)
class Walk:
    """WALK: the files matching a glob at store rev ``rev``, in path order."""

    rev: int
    files: list[File]


@dataclass(frozen=True)
class SelfInfo:
    """SELF: the node's id and address, its cluster, and whether it is a
    member, writable, and voting (its vote counts in the next instance)."""

    id: str
    addr: str
    cluster: str
    member: bool
    writable: bool
    voting: bool = False


@dataclass(frozen=True)
class Event:
    """One change seen by a watch: ``op`` is ``"set"`` or ``"del"``.

    ``value`` is the new bytes for a set and ``None`` for a del.
    """

    rev: int
    path: str
    op: str
    value: Optional[bytes]


def decode_value(obj: dict[str, Any]) -> Optional[bytes]:
    """The bytes of a JSON ``value`` (SPEC §3: UTF-8 text or base64)."""
    value = obj.get("value")
    if value is None:
        return None
    if obj.get("encoding") == "base64":
        return base64.b64decode(value)
    return str(value).encode("utf-8")


