"""Storage: the data dir (``--data-dir``), its files, and the one writer.

Blocking file I/O lives here and runs off the reactor thread (the
:class:`~doozer.storage.writer.Writer`'s runner) or before the reactor runs:

- :mod:`.files`: whole files written atomically (temp, fsync, rename, fsync dir)
- :mod:`.records`: record files: length + CRC32 + payload; torn tails cut, damage refused
- :mod:`.segments`: the log as numbered record files, rotated by size, old ones dropped
- :mod:`.identity`: cluster, node and incarnation; a foreign data dir refused
- :mod:`.writer`: group commit: one fsync per batch, Deferreds fired once durable
- :mod:`.errors`: damaged, foreign, failed: each says what to do

See ``docs/storage.md`` for the byte layout and what is not done yet.
"""

from doozer.storage.errors import DamagedStorage, ForeignDataDir, StorageError, StorageFailed

__all__ = ["DamagedStorage", "ForeignDataDir", "StorageError", "StorageFailed"]
