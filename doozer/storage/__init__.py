"""Storage: the data dir (``--data-dir``), its files, and the one writer.

Blocking file I/O lives here and runs off the reactor thread or before the
reactor runs:

- :mod:`.files`: whole files written atomically (temp, fsync, rename, fsync dir)
- :mod:`.errors`: damaged, foreign, failed: each says what to do

"""

from doozer.storage.errors import DamagedStorage, ForeignDataDir, StorageError, StorageFailed

__all__ = ["DamagedStorage", "ForeignDataDir", "StorageError", "StorageFailed"]
