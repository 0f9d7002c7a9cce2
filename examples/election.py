"""Recipe: master election on the public doozer client (CAS + watch + lease).

The master is whoever holds the file ``KEY`` (its body is the holder's
name). Doozer has no sessions or ephemeral files, so the master proves it is
alive by rewriting ``KEY`` every ``lease / 3`` seconds with a conditional SET
at the rev it last wrote. A candidate that sees ``KEY`` unchanged for a whole
``lease`` takes it over with a SET conditional on the rev it saw: if two
candidates try at once, exactly one succeeds (the other gets RevMismatch),
and a master that was only slow learns it was deposed when its next refresh
fails with RevMismatch.

Run several of these and kill the master (Ctrl-C, or kill -9)::

    python examples/election.py -a doozer:?ca=127.0.0.1:8046 alice
    python examples/election.py bob

Each prints ``NAME is master`` or ``NAME follows HOLDER`` when that changes.
See docs/recipes.md for the discussion.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Optional

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from doozer.client import Client, NoEnt, RevMismatch, Timeout, TooLate, connect

DEFAULT_KEY = "/election/master"


class Candidate:
    """One participant in the election for ``key``.

    :param client: a doozer client.
    :param key: the file whose holder is the master.
    :param name: this candidate's name (must be unique among candidates).
    :param clock: for the refresh period (the reactor, or a Clock in tests).
    :param lease: seconds without a refresh after which the master is
        presumed dead; the master refreshes every ``lease / 3``.
    :param on_change: called with ``(is_master, holder)`` whenever that changes.

    :ivar is_master: True while this candidate believes it is the master.
    :ivar holder: the name in ``key`` as last seen ("" when nobody).
    """

    def __init__(
        self,
        client: Client,
        key: str,
        name: str,
        clock: IReactorTime,
        lease: float = 10.0,
        on_change: Optional[Callable[[bool, str], None]] = None,
    ) -> None:
        self.client = client
        self.key = key
        self.name = name
        self.clock = clock
        self.lease = lease
        self.on_change = on_change or (lambda master, holder: None)
        self.is_master = False
        self.holder = ""
        self._running: Optional[Deferred[None]] = None

    def start(self) -> "Deferred[None]":
        """Campaign (and serve while elected) until :meth:`stop`."""
        def stopped(failure: Failure) -> None:
            failure.trap(CancelledError)

        self._running = ensureDeferred(self._run())
        self._running.addErrback(stopped)
        return self._running

    def stop(self) -> None:
        """Stop campaigning; a master stops refreshing (its lease then runs out).

        A graceful master should also call :meth:`resign` first.
        """
        if self._running is not None:
            self._running.cancel()

    async def resign(self) -> None:
        """Give the key up at once (only if still ours), so a follower takes over."""
        if self.is_master:
            try:
                await self.client.delete(self.key, self._rev)
            except (RevMismatch, NoEnt):
                pass
            self._set(False, "")

    def _set(self, master: bool, holder: str) -> None:
        if (master, holder) != (self.is_master, self.holder):
            self.is_master, self.holder = master, holder
            self.on_change(master, holder)

    async def _run(self) -> None:
        self._rev = 0
        expired = False
        while True:
            if await self._claim(expired):
                await self._serve()
                expired = False
            else:
                expired = await self._follow()

    async def _claim(self, expired: bool) -> bool:
        """Try to become master with a SET conditional on the rev last seen.

        :param expired: the holder let its lease run out at ``self._rev``.
        """
        try:
            current = await self.client.get_raw(self.key)
        except NoEnt:
            seen, holder = 0, ""
        else:
            seen, holder = current.rev, current.value.decode("utf-8", "replace")
        if holder and holder != self.name and not (expired and seen == self._rev):
            self._rev = seen
            self._set(False, holder)
            return False
        try:
            self._rev = await self.client.set(self.key, self.name.encode(), seen)
        except RevMismatch as mismatch:
            self._rev = mismatch.rev
            return False
        self._set(True, self.name)
        return True

    async def _serve(self) -> None:
        """Refresh the key every lease/3 until a refresh fails (deposed)."""
        while True:
            await deferLater(self.clock, self.lease / 3, lambda: None)
            try:
                self._rev = await self.client.set(self.key, self.name.encode(), self._rev)
            except RevMismatch:
                self._set(False, "")
                return

    async def _follow(self) -> bool:
        """Watch the key; True once it went a whole lease unchanged (the
        master is presumed dead) or was deleted."""
        while True:
            try:
                event = await self.client.wait(self.key, self._rev + 1, timeout=self.lease)
            except Timeout:
                return True
            except TooLate:
                return False  # history moved on: read the key afresh
            self._rev = event.rev
            if event.op == "del" or not event.value:
                return True
            self._set(False, event.value.decode("utf-8", "replace"))


async def _main(reactor: Any, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="master election on doozer")
    parser.add_argument("-a", dest="uri", default=os.environ.get("DOOZER_URI"))
    parser.add_argument("-k", dest="key", default=DEFAULT_KEY)
    parser.add_argument("-l", dest="lease", type=float, default=10.0)
    parser.add_argument("name")
    args = parser.parse_args(argv)

    def report(master: bool, holder: str) -> None:
        line = f"{args.name} is master" if master else f"{args.name} follows {holder or '(nobody)'}"
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    candidate = Candidate(connect(args.uri, clock=reactor), args.key, args.name,
                          reactor, args.lease, report)

    async def shutdown() -> None:
        candidate.stop()
        await candidate.resign()

    reactor.addSystemEventTrigger("before", "shutdown", lambda: ensureDeferred(shutdown()))
    await candidate.start()


def main(argv: Optional[list[str]] = None) -> None:
    """Campaign under ``react`` until interrupted."""
    from twisted.internet.task import react

    react(_main, (sys.argv[1:] if argv is None else argv,))


if __name__ == "__main__":
    main()
