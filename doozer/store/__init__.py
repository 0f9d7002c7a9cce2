"""The replicated store: a versioned tree of files and its rules.

Sans-I/O and knowing nothing of consensus or the network: mutations in
decided order go in (:meth:`Store.apply`), reads at any kept rev and
watches come out.

- :mod:`doozer.store.tree`: the versioned tree (:class:`Store`), reads, quota size
- :mod:`doozer.store.history`: the kept history window (old states, events, pruning)
- :mod:`doozer.store.waiters`: watches and rev waiters
- :mod:`doozer.store.snapshot`: snapshots as plain functions (``dump``, ``load``)
- :mod:`doozer.store.mutation`: the one thing that changes the store
- :mod:`doozer.store.dedup`: the record of applied request ids, bounded by deadlines
- :mod:`doozer.store.cal`: the CAL's rules (slot names, member order)
- :mod:`doozer.store.path`, :mod:`doozer.store.glob`: paths and globs
- :mod:`doozer.store.types`: files, directories, events, outcomes
"""

from doozer.store.cal import CAL_DIR
from doozer.store.tree import Store
from doozer.store.types import NO_KEY, Dir, Event, File, Outcome

__all__ = ["CAL_DIR", "NO_KEY", "Dir", "Event", "File", "Outcome", "Store"]
