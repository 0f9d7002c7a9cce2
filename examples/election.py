"""Recipe: master election on leases, with fencing (SPEC §9, §10).

Each candidate holds a lease (``client.lease(ttl)``, renewed by keepalives
that take no rev). The master is whoever created ``KEY`` (rev 0: it must not
exist) attached to its lease; the rev of that create is the master's
**fencing token**. When the master dies its lease expires and ``KEY`` is
deleted with it; the followers, watching ``KEY``, see the ``del`` and race to
create it again — exactly one wins.

The master does its protected writes with :meth:`Candidate.fenced`: a
transaction comparing ``KEY`` with the token, plus one op that needs the
lease alive, so a deposed master (paused, partitioned, slow) has them
refused even if it still believes it is master. A candidate whose lease is
lost (the client's ``lost`` signal) stops acting as master at once.

Run several, then kill -9 the master::

    python examples/election.py -a 'doozer:?ca=127.0.0.1:8046' -l 5 alice
    python examples/election.py -a 'doozer:?ca=127.0.0.1:8046' -l 5 bob

Each prints ``NAME is master (token T, lease L)``, ``NAME follows HOLDER``
or ``NAME steps down: WHY``; the master writes ``NAME TOKEN N`` to
``/election/work`` every second, fenced. See docs/recipes.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Optional, Sequence, TypeVar

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from doozer.client import Client, DoozerError, NoEnt, RevMismatch, connect
from doozer.client.lease import Lease
from doozer.client.txn import TxnOp

DEFAULT_KEY = "/election/master"
DEFAULT_WORK = "/election/work"
T = TypeVar("T")


class NotMaster(Exception):
    """A fenced write was asked of a candidate that is not (or no longer) master."""


def fence_path(key: str) -> str:
    """The file a fenced write sets on the master's lease (beside ``key``)."""
    return key + ".fence"


def fenced_txn(key: str, token: int, lease_id: str,
               ops: Sequence[TxnOp]) -> tuple[list[tuple[str, int]], list[TxnOp]]:
    """``(compare, ops)`` of a write fenced by ``token`` and the lease.

    The compare ``(key, token)`` fails (``REV_MISMATCH``) once another
    master re-created ``key`` (a higher rev). It alone is not enough: a
    missing file counts as rev 0 (SPEC §1), so it would hold between the
    old lease's end (``key`` deleted) and the next claim. The last op sets
    :func:`fence_path` on the lease, which fails (``NOENT``) once the lease
    has ended. Both are checked by the node at the rev the write applies.
    """
    marker: TxnOp = ("set", fence_path(key), str(token), lease_id)
    return [(key, token)], [*ops, marker]


class Candidate:
    """One participant in the election for ``key``.

    :param client: a doozer client.
    :param key: the file whose creator (on its lease) is the master.
    :param name: this candidate's name (unique among candidates).
    :param clock: the reactor, or a Clock in tests.
    :param ttl: the lease's ttl in seconds (1-3600): how long the others
        wait for a master that died without a word.
    :param on_change: called with ``(is_master, holder)`` whenever that changes.

    :ivar is_master: True while this candidate is master and its lease is
        confirmed; False the moment the lease is lost.
    :ivar holder: the name in ``key`` as last seen ("" when nobody).
    :ivar token: the fencing token (``key``'s rev) while master, else None.
    :ivar lease: the lease held now (None between leases).
    :ivar why: why it last stepped down.
    """

    def __init__(
        self,
        client: Client,
        key: str,
        name: str,
        clock: IReactorTime,
        ttl: int = 10,
        on_change: Optional[Callable[[bool, str], None]] = None,
    ) -> None:
        self.client = client
        self.key = key
        self.name = name
        self.clock = clock
        self.ttl = ttl
        self.on_change = on_change or (lambda master, holder: None)
        self.is_master = False
        self.holder = ""
        self.token: Optional[int] = None
        self.lease: Optional[Lease] = None
        self.why = ""
        self._running: Optional[Deferred[None]] = None
        self._waiting: Optional[Deferred[Any]] = None

    def start(self) -> "Deferred[None]":
        """Campaign (and serve while elected) until :meth:`stop`."""
        def stopped(failure: Failure) -> None:
            failure.trap(CancelledError)

        self._running = ensureDeferred(self._run())
        self._running.addErrback(stopped)
        return self._running

    def stop(self) -> "Deferred[None]":
        """Stop campaigning and revoke the lease, so a master's key is
        deleted at once and a follower takes over without waiting a ttl.
        The Deferred fires once the lease is revoked (or could not be)."""
        done: Deferred[None] = Deferred()
        running = self._running
        if running is None or running.called:
            done.callback(None)
            return done

        def ended(result: Any) -> Any:
            done.callback(None)
            return result

        running.addBoth(ended)
        self._step_down("stopped")
        running.cancel()
        return done

    async def fenced(self, ops: Sequence[TxnOp]) -> int:
        """Apply ``ops`` at one rev only if this candidate is still master.

        :raises NotMaster: not master now (nothing is sent).
        :raises RevMismatch: another master holds the key (it steps down).
        :raises NoEnt: its lease has ended (it steps down), or an op's own NOENT.
        """
        lease, token = self.lease, self.token
        if not self.is_master or lease is None or lease.id is None or token is None \
                or self.clock.seconds() >= lease.confirmed_until:
            raise NotMaster(f"{self.name} is not master")
        compare, all_ops = fenced_txn(self.key, token, lease.id, ops)
        try:
            return await self.client.txn(compare, all_ops)
        except RevMismatch as e:
            if token == self.token:
                self._step_down(f"fenced write refused: {self.key} is at rev {e.rev} now")
            raise
        except NoEnt as e:
            if e.extra.get("lease") == lease.id and token == self.token:
                self._step_down(f"fenced write refused: lease {lease.id} has ended")
            raise

    # ------------------------------------------------------------------

    def _set(self, master: bool, holder: str) -> None:
        if (master, holder) != (self.is_master, self.holder):
            self.is_master, self.holder = master, holder
            self.on_change(master, holder)

    def _step_down(self, why: str) -> None:
        if self.is_master:
            self.why = why
            self.token = None
            self._set(False, "")

    def _on_lost(self, why: str, lease: Lease) -> str:
        """The lease may have expired: stop acting as master now, and stop
        waiting (the campaign then grants a new lease)."""
        if lease is self.lease:
            self._step_down(f"lease lost: {why}")
            if self._waiting is not None:
                self._waiting.cancel()
        return why

    async def _or_lost(self, d: "Deferred[T]") -> Optional[T]:
        """``d``'s result, or None if the lease is lost first."""
        if self.lease is None or self.lease.is_lost:
            d.cancel()
            d.addErrback(lambda f: f.trap(CancelledError))
            return None
        self._waiting = d
        try:
            return await d
        except CancelledError:
            if self.lease is not None and self.lease.is_lost:
                return None
            raise
        finally:
            self._waiting = None

    async def _run(self) -> None:
        while True:
            try:
                async with self.client.lease(self.ttl) as lease:
                    self.lease = lease
                    lease.lost.addCallback(self._on_lost, lease)
                    await self._campaign(lease)
            except DoozerError:
                pass  # no grant (no quorum, no node): try again shortly
            self.lease = None
            await deferLater(self.clock, self.ttl / 10, lambda: None)

    async def _campaign(self, lease: Lease) -> None:
        """Claim, serve or follow until the lease is lost."""
        while not lease.is_lost:
            try:
                seen = await self._claim(lease)
                if seen is None:
                    assert self.token is not None
                    await self._watch_key(self.token)  # serve until the key changes
                    self._step_down(f"{self.key} changed or was deleted")
                else:
                    await self._watch_key(seen)  # follow until the key is deleted
            except NoEnt as e:
                if e.extra.get("lease") == lease.id:
                    return  # our lease is gone: grant a new one
                await self._or_lost(deferLater(self.clock, self.ttl / 10, lambda: None))
            except DoozerError:  # TooLate, no quorum, no node...
                await self._or_lost(deferLater(self.clock, self.ttl / 10, lambda: None))

    async def _claim(self, lease: Lease) -> Optional[int]:
        """Create ``key`` on the lease (rev 0). None when this candidate is
        now master; else the rev of the holder's key, to follow from."""
        assert lease.id is not None
        while True:
            try:
                token = await self.client.set(self.key, self.name.encode(), 0, lease=lease.id)
                break
            except RevMismatch:
                try:
                    current = await self.client.get_raw(self.key)
                except NoEnt:
                    continue  # deleted since: try again
            holder = current.value.decode("utf-8", "replace")
            if holder == self.name and self.key in (await self.client.lease_info(lease.id))["files"]:
                token = current.rev  # an earlier try committed (a retry after failover)
                break
            self._set(False, holder)
            return current.rev
        if lease.is_lost:
            return 0
        if not self.is_master:
            self.token = token
            self._set(True, self.name)
        return None

    async def _watch_key(self, rev: int) -> None:
        """Until ``key`` is deleted (or, for the master, changes at all) after
        ``rev``, or the lease is lost; follows changes of holder."""
        while True:
            event = await self._or_lost(self.client.wait(self.key, rev + 1))
            if event is None or event.op == "del" or self.is_master:
                return
            rev = event.rev
            self._set(False, (event.value or b"").decode("utf-8", "replace"))


async def _work(candidate: Candidate, clock: Any, path: str, every: float,
                say: Callable[[str], None]) -> None:
    """The master's job in this demo: ``NAME TOKEN N`` into ``path``, fenced."""
    n = 0
    while True:
        await deferLater(clock, every, lambda: None)
        if not candidate.is_master:
            continue
        n += 1
        try:
            await candidate.fenced([("set", path, f"{candidate.name} {candidate.token} {n}")])
        except NotMaster:
            pass
        except DoozerError as e:
            say(f"{candidate.name} fenced write refused: {e.code}")


async def _main(reactor: Any, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="master election on doozer leases")
    parser.add_argument("-a", dest="uri", default=os.environ.get("DOOZER_URI"))
    parser.add_argument("-k", dest="key", default=DEFAULT_KEY)
    parser.add_argument("-l", dest="ttl", type=int, default=10, help="lease ttl, seconds")
    parser.add_argument("-w", dest="work", default=DEFAULT_WORK, help="file the master writes")
    parser.add_argument("-i", dest="every", type=float, default=1.0, help="seconds between writes")
    parser.add_argument("name")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def report(master: bool, holder: str) -> None:
        if master:
            lease_id = candidate.lease.id if candidate.lease else "?"
            say(f"{args.name} is master (token {candidate.token}, lease {lease_id})")
        elif holder:
            say(f"{args.name} follows {holder}")
        else:
            say(f"{args.name} steps down: {candidate.why}")

    candidate = Candidate(connect(args.uri, clock=reactor), args.key, args.name,
                          reactor, args.ttl, report)
    reactor.addSystemEventTrigger("before", "shutdown", candidate.stop)
    ensureDeferred(_work(candidate, reactor, args.work, args.every, say))
    await candidate.start()


def main(argv: Optional[list[str]] = None) -> None:
    """Campaign under ``react`` until interrupted."""
    from twisted.internet.task import react

    react(_main, (sys.argv[1:] if argv is None else argv,))


if __name__ == "__main__":
    main()
