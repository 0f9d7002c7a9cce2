"""Whole files written atomically: write a temp file, fsync, rename, fsync the dir."""

from __future__ import annotations

import os
import tempfile

#: The prefix of temp files; a crash may leave one behind (see :func:`remove_temps`).
TEMP_PREFIX = ".tmp-"


def write_atomically(path: str, data: bytes, fsync: bool = True) -> None:
    """Make ``path`` hold exactly ``data``: after a crash it holds the old
    contents or the new ones, never a mix or nothing.

    :param path: the file to write; its directory must exist.
    :param data: the whole new contents.
    :param fsync: sync the file and the directory, so the new contents
        survive a power loss once this returns. Only tests pass False
        (``--unsafe-no-fsync``).
    :raises OSError: when writing fails; the temp file is removed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        # The rename is in the directory: without this, a crash may forget it.
        fsync_directory(directory)


def fsync_directory(directory: str) -> None:
    """Make the directory's entries (new names, renames, removals) durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temps(directory: str) -> list[str]:
    """Remove the temp files a crash in :func:`write_atomically` left behind.

    :returns: the names removed.
    """
    removed = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(TEMP_PREFIX):
            os.unlink(os.path.join(directory, name))
            removed.append(name)
    return removed


def read_whole(path: str) -> bytes:
    """The contents of ``path``."""
    with open(path, "rb") as f:
        return f.read()
