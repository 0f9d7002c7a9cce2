"""A node's data dir (``--data-dir``, SPEC §8; CONSENSUS.md §D).

What the node keeps on disk, on top of :mod:`doozer.storage` (the log's
payloads and its guarded segments in :mod:`doozer.node.logfile`, the
snapshot files in :mod:`doozer.node.snapshotfile`):

- ``identity``: cluster name and id, node id, incarnation (bumped and
  fsynced at every start, before anything is sent: D6);
- ``log-NNNNNNNN``: the sequencer's records (D1-D7), appended by the one
  group-commit :class:`~doozer.storage.writer.Writer`; one payload is the
  records of one pump, a msgpack list of
  :func:`~doozer.consensus.durable.encode_record` tuples, with the
  :class:`~doozer.consensus.durable.DecidedRec` of the instances applied
  since the last one (the decided log: a restart applies it at once, see
  :meth:`DataDir.replay_decided`);
- ``snapshot-SSSSSSSSSSSSSSSS``: the store (with its history window) at
  instance ``S``, written whole (temp file, fsync, rename, fsync dir) before
  the floor record that refers to it (D7). A record file of chunks, so a
  store larger than one record fits.

Everything here that blocks runs either before the reactor runs
(:meth:`DataDir.open`), once when the node first joins a cluster
(:meth:`DataDir.attach`, and a snapshot installed from a peer), or on the
writer's thread (appends, periodic snapshots, compaction).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from doozer.consensus.durable import DecidedRec, Record, Recovered, compact
from doozer.consensus.messages import Learn
from doozer.consensus.value import encode_batch
from doozer.node.health import DiskWatch
from doozer.node.logfile import GuardedLog, chunk_records, decode_payload, encode_records, rewrite_payloads
from doozer.node.snapshot import Snapshot
from doozer.node.snapshotfile import read_snapshot, snapshot_name, snapshot_seqns, write_snapshot
from doozer.storage import identity as identity_file
from doozer.storage import records, segments
from doozer.storage.errors import DamagedStorage, ForeignDataDir, StorageFailed
from doozer.storage.files import fsync_directory, remove_temps
from doozer.storage.identity import Identity
from doozer.storage.stats import StorageStats
from doozer.storage import syncer as syncer_module
from doozer.storage.writer import Runner, ThreadRunner, Writer, pack_batch, unpack_batch

__all__ = ["DataDir", "SNAPSHOT_EVERY"]

#: Instances applied between two snapshots written to the data dir.
SNAPSHOT_EVERY = 10_000
#: Bytes of records appended after which a snapshot is written anyway: the
#: records since the last compaction are also held in memory (to rewrite
#: what must be kept), so this bounds that memory whatever the values' size.
SNAPSHOT_BYTES = 32 << 20

#: Seconds a decided record may wait for a batch to ride with before it is
#: written on its own (an idle node: a crash then costs a re-decision).
DECIDED_DELAY = 0.05


class DataDir:
    """One node's data dir.

    :param directory: the dir (made when missing).
    :param cluster: ``--cluster``: a dir of another cluster is refused.
    :param fsync: False only in tests (``--unsafe-no-fsync``).
    """

    log = Logger()

    def __init__(self, directory: str, cluster: str, fsync: bool = True) -> None:
        self.directory = os.path.abspath(directory)
        self.cluster = cluster
        self.fsync = fsync
        self.identity: Optional[Identity] = None
        #: this start's incarnation (1 for a new dir)
        self.incarnation = 1
        #: at a restart: the durable consensus state and the newest snapshot
        self.recovered: Optional[Recovered] = None
        self.snapshot: Optional[Snapshot] = None
        self.writer: Optional[Writer] = None
        self._log: Optional[GuardedLog] = None
        #: the records written since the last compaction (compacted in memory
        #: as the floor rises), to rewrite what must be kept when old
        #: segments are deleted
        self._live: list[Record] = []
        #: decisions applied and not yet handed to the writer: they ride
        #: with the next append (or go after DECIDED_DELAY)
        self._decided: list[Record] = []
        self._decided_call: Any = None
        self.collected = 0  # the floor up to which records were compacted away
        self.snapshot_seqn = 0  # the newest snapshot on disk
        #: the size of the newest snapshot written or read (/metrics)
        self.snapshot_bytes = 0
        self.snapshotting = False
        #: bytes of records appended since the newest snapshot was started
        self.appended = 0
        #: the CAL of the newest snapshot on disk (None: not known yet)
        self.snapshot_cal: Optional[list[str]] = None
        self.on_failure: Callable[[StorageFailed], None] = lambda error: None
        #: fsync latency and batch sizes of the log's writer (one summary
        #: line is logged at stop; a /metrics endpoint can read it too)
        self.stats = StorageStats()
        self._summarised = False
        self._runner: Optional[Runner] = None
        #: how long the disk has owed an answer (``/livez``), once started
        self.disk: Optional[DiskWatch] = None
        self._reactor: Any = None

    # -- start-up (blocking, before the reactor runs) -------------------------

    def open(self) -> None:
        """Read the dir: a new one, or a node's state to restart from.

        For a node's dir the incarnation is bumped and fsynced here, before
        anything is sent (D6).

        :raises StorageError: a damaged dir, or one of another cluster.
        """
        os.makedirs(self.directory, exist_ok=True)
        for name in remove_temps(self.directory):
            self.log.info("removed {name}, left by a crash while writing", name=name)
        ident = identity_file.load(self.directory, cluster=self.cluster)
        if ident is None:
            return
        ident = identity_file.bump(self.directory, ident, self.fsync)
        self.identity = ident
        self.incarnation = ident.incarnation
        found, torn = segments.recover(self.directory, self.fsync)
        if torn is not None:
            self.log.warn("{torn}", torn=torn.describe())
        recs: list[Record] = []
        for segment in found:
            for record in segment.records:
                try:
                    payloads = unpack_batch(record)
                except ValueError as e:
                    raise DamagedStorage(segment.path, f"a log record that is no batch ({e})") from None
                for payload in payloads:
                    recs.extend(decode_payload(payload, segment.path))
        seqns = snapshot_seqns(self.directory)
        if not seqns:
            raise DamagedStorage(
                identity_file.path_of(self.directory),
                "an identity but no snapshot (the node crashed while first joining its cluster)",
            )
        path = os.path.join(self.directory, snapshot_name(seqns[-1]))
        snap = read_snapshot(path)
        if snap.cluster != ident.cluster or snap.cluster_id != ident.cluster_id:
            raise ForeignDataDir(
                self.directory,
                f"{path} is of cluster {snap.cluster!r} ({snap.cluster_id}), its identity of "
                f"{ident.cluster!r} ({ident.cluster_id})",
            )
        recovered = Recovered.replay(ident.node_id, ident.incarnation, recs)
        if snap.seqn < recovered.floor:
            raise DamagedStorage(
                path,
                f"the newest snapshot is of instance {snap.seqn}, below the floor "
                f"{recovered.floor} the log was cut at (a snapshot file is missing)",
            )
        self.recovered = recovered
        self.snapshot = snap
        self.snapshot_seqn = snap.seqn
        self.snapshot_bytes = os.path.getsize(path)
        self.collected = recovered.floor
        self._live = compact(recs, recovered.floor)
        # What the log holds since the snapshot counts towards the next one:
        # else each restart could add another SNAPSHOT_BYTES to replay.
        self.appended = sum(len(r) for segment in found for r in segment.records)
        self._log = GuardedLog(self.directory, found, self.fsync)

    @property
    def log_bytes(self) -> int:
        """Bytes of the records in the log's kept segments (0 before the
        node is in a cluster); read by /metrics."""
        return 0 if self._log is None else self._log.kept_bytes

    @property
    def log_segments(self) -> int:
        """How many segment files the log keeps (0 before it has any)."""
        return 0 if self._log is None else self._log.segments

    @property
    def restarting(self) -> bool:
        """Whether the dir held a node's state (it rejoins from it)."""
        return self.snapshot is not None

    # -- running --------------------------------------------------------------

    def start(self, reactor: Any, runner: Optional[Runner] = None) -> None:
        """Say where the writer reports (the reactor) and how it runs:
        ``runner`` (tests), else a thread and, when syncing on a system
        that has what it needs, a child process for the log's batches."""
        self._reactor = reactor
        syncer = None
        if runner is None:
            runner = ThreadRunner(reactor)
            if self.fsync and syncer_module.available():
                syncer = syncer_module.Syncer(reactor)
        # Every piece of blocking work goes through the watch, so /livez
        # knows when the disk stops answering (doozer/node/health.py).
        self.disk = DiskWatch(runner, reactor, syncer)
        self._runner = self.disk
        if self._log is not None:
            self._start_writer()

    def _start_writer(self) -> None:
        assert self._log is not None and self._runner is not None
        # (SegmentedLog's path is a property; the Sink protocol only reads it)
        self.writer = Writer(self._log, self._runner, self._reactor,  # type: ignore[arg-type]
                             on_failure=self._failed, syncer=self.disk)
        self.writer.observers.append(self.stats.observe)
        self.writer.start()

    def _failed(self, error: StorageFailed) -> None:
        self.on_failure(error)

    def attach(self, cluster_id: str, node_id: str, snap: Snapshot) -> None:
        """The node joins its first cluster: write the identity (incarnation
        1), the snapshot it starts from and a new log, before the sequencer
        exists (blocking, once)."""
        if self.identity is not None:
            raise RuntimeError("this data dir already belongs to a node")
        self.identity = identity_file.create(
            self.directory, self.cluster, cluster_id, node_id, self.fsync)
        self.incarnation = self.identity.incarnation
        self.snapshot_bytes = os.path.getsize(write_snapshot(self.directory, snap, self.fsync))
        self.snapshot_seqn = snap.seqn
        self._log = GuardedLog(self.directory, [], self.fsync)
        self._start_writer()

    def append(self, recs: list[Record]) -> "Deferred[None]":
        """Write the records of one pump; fires once they are fsynced.

        The writer starts on them at once (when it is not busy with the
        batch before): the node appends once per pump, so nothing else of
        this turn would join them, and the turn's end is a reactor
        iteration later. The decisions applied since the last append go
        in the same payload."""
        assert self.writer is not None
        if self._decided:
            recs = self._decided + recs
            self._decided = []
        done = self._write(recs)
        self.writer.flush()
        return done

    def _write(self, recs: list[Record]) -> "Deferred[None]":
        """Hand ``recs`` to the writer: one payload, or several when they
        would not fit one record of the log (a busy pump of large values);
        fires once the last (so all) are fsynced."""
        assert self.writer is not None
        self._live.extend(recs)
        payload = encode_records(recs)
        self.appended += len(payload)
        if len(payload) + 64 <= records.MAX_RECORD // 2:
            return self.writer.append(payload, len(recs))
        done = None
        for chunk in chunk_records(recs):
            done = self.writer.append(encode_records(chunk), len(chunk))
        assert done is not None
        return done

    def decided(self, seqn: int, items: list[bytes], outcomes: Any = None) -> None:
        """The node applied instance ``seqn`` (``Node.on_applied``): keep it
        for a fast restart. Nothing waits for it: it rides with the next
        append, or is written on its own after DECIDED_DELAY."""
        if self.writer is None:
            return
        self._decided.append(DecidedRec(seqn, items))
        if self._decided_call is None and self._reactor is not None:
            self._decided_call = self._reactor.callLater(DECIDED_DELAY, self._write_decided)

    def _write_decided(self) -> None:
        self._decided_call = None
        if self._decided and self.writer is not None and self.writer.failure is None:
            recs, self._decided = self._decided, []
            self._write(recs).addErrback(lambda _: None)

    def replay_decided(self, replica: Any, node_id: str, now: float) -> int:
        """At a restart, after the replica was made from the snapshot: apply
        the run of decisions the log holds right after it, through the
        sequencer as if a peer had sent them (it keeps their values to
        answer its peers, and the membership they make), without deciding
        them again.

        :returns: how many instances were applied.
        """
        recovered = self.recovered
        if recovered is None:
            return 0
        applied = 0
        sequencer = replica.sequencer
        for seqn, items in recovered.decided_after(replica.applied_seqn):
            sequencer.catchup.on_learn(node_id, Learn(seqn, encode_batch(items)), now)
            for _ in replica.apply_decided():
                applied += 1
            if replica.applied_seqn != seqn:
                break  # the sequencer did not take it: leave the rest to consensus
        recovered.decided.clear()  # applied, or decided again by consensus
        if self.snapshot is not None:
            # Loaded into the store now: its bytes need not stay in memory.
            self.snapshot = dataclasses.replace(self.snapshot, store=b"")
        return applied

    def save_snapshot_now(self, snap: Snapshot) -> None:
        """Write ``snap`` at once (blocking): a snapshot installed from a peer
        must be on disk before its floor record (D7)."""
        self.snapshot_bytes = os.path.getsize(write_snapshot(self.directory, snap, self.fsync))
        self.snapshot_seqn = max(self.snapshot_seqn, snap.seqn)

    def save_snapshot(self, snap: Snapshot) -> "Deferred[None]":
        """Write ``snap`` on the writer's thread; fires once it is durable."""
        assert self.writer is not None
        directory, fsync = self.directory, self.fsync
        self.snapshotting = True
        self.appended = 0

        def done(result: Any) -> Any:
            self.snapshotting = False
            return result

        def work() -> None:
            self.snapshot_bytes = os.path.getsize(write_snapshot(directory, snap, fsync))

        return self.writer.call(work).addBoth(done)

    def collect(self, floor: int) -> None:
        """The floor record of ``floor`` is synced (``durable.collectable``):
        rewrite what must be kept past it, then delete the older segments and
        snapshots (D7: the floor is on disk first)."""
        if floor <= self.collected or self.writer is None or self._log is None:
            return
        self.collected = floor
        self._live = compact(self._live, floor)
        log = self._log
        # With one segment nothing is rewritten (its records stay until it
        # rotates); the snapshots below the floor go in any case.
        kept = list(self._live) if log.current > log.first else []
        payloads = rewrite_payloads(kept)
        directory, fsync = self.directory, self.fsync

        def work() -> None:  # on the writer's thread, in order with the batches
            try:
                first = None
                for payload in payloads:
                    log.append(pack_batch([payload]))
                    if first is None:
                        first = log.current  # every kept record is in it or later
                log.sync()
            except BaseException as e:
                # A partial record must stay the last one: nothing more is
                # written to this log (the writer's next batch fails too).
                log.broken = e
                raise
            if first is not None:
                log.drop_before(first)
            removed = False
            for seqn in snapshot_seqns(directory)[:-1]:
                if seqn < floor:
                    os.unlink(os.path.join(directory, snapshot_name(seqn)))
                    removed = True
            if removed and fsync:
                fsync_directory(directory)

        def failed(f: Any) -> None:
            self.log.error("compacting the log failed: {err}", err=f.getErrorMessage())
            self.on_failure(StorageFailed(log.path, f.value))

        self.writer.call(work).addErrback(failed)

    def stop(self) -> "Deferred[None]":
        """Write what was appended, close the log, stop the thread; then log
        one line on what the writer's batches cost (:class:`StorageStats`)."""
        if self.writer is None:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        if self._decided_call is not None and self._decided_call.active():
            self._decided_call.cancel()
        self._write_decided()  # the decisions not written yet go with the last batch

        def summary(result: Any) -> Any:
            if not self._summarised:
                self._summarised = True
                self.log.info("{summary}", summary=self.stats.summary())
            return result

        return self.writer.stop().addBoth(summary)
