"""Recipe: a service registry whose entries vanish with their process.

Each instance of a service registers its address in ``/svc/<service>/<instance>``
attached to its own lease (SPEC §9). While the process lives its client
renews the lease (keepalives take no rev, so a registry of a thousand idle
instances writes nothing); when the process dies the lease expires within
``ttl × 1.02 + 2`` s and the entry is deleted, and every watcher sees an
ordinary ``del``. A clean exit revokes the lease: the entry goes at once.

Consumers look the service up with one WALK and follow it with a WATCH from
the rev just after the WALK, so they never miss (or see twice) a change.

Run it against a node::

    python examples/registry.py -a 'doozer:?ca=127.0.0.1:8046' register web w1 10.0.0.1:80
    python examples/registry.py lookup web
    python examples/registry.py follow web          # prints the table after each change

``register`` stays registered until interrupted. See docs/recipes.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional, TypeVar

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from doozer.client import Client, DoozerError, TooLate, connect

ROOT = "/svc"
T = TypeVar("T")


def service_dir(service: str) -> str:
    """The directory holding a service's instances."""
    return f"{ROOT}/{service}"


@dataclass
class Table:
    """A service's instances (name -> address) as of store rev ``rev``."""

    service: str
    rev: int
    instances: dict[str, str] = field(default_factory=dict)


async def register(client: Client, service: str, instance: str, address: str,
                   lease_id: str) -> int:
    """Publish ``instance`` of ``service`` at ``address`` on lease ``lease_id``;
    returns the file's rev. Re-registering overwrites: the latest address wins.

    :raises NoEnt: the lease has ended.
    """
    return await client.set(f"{service_dir(service)}/{instance}", address.encode(), -1,
                            lease=lease_id)


async def keep_registered(client: Client, service: str, instance: str, address: str,
                          ttl: int = 10,
                          on_registered: Optional[Callable[[str, int], None]] = None) -> None:
    """Stay registered until cancelled, then revoke (the entry goes at once).

    If the lease is lost while the process lives (a partition longer than
    the ttl), the entry may be gone: a new lease is granted and the entry
    written again. ``on_registered(lease_id, rev)`` is called each time.
    """
    while True:
        try:
            async with client.lease(ttl) as lease:
                assert lease.id is not None
                rev = await register(client, service, instance, address, lease.id)
                if on_registered is not None:
                    on_registered(lease.id, rev)
                await _copy(lease.lost)  # cancelling the copy leaves lease.lost alone
        except DoozerError:
            pass  # no grant or no write (no quorum, lease gone): try again
        await deferLater(client.clock, ttl / 10, lambda: None)


def _copy(d: "Deferred[T]") -> "Deferred[T]":
    """A Deferred with ``d``'s result that can be cancelled without touching ``d``."""
    copy: Deferred[T] = Deferred()

    def passed(result: Any) -> Any:
        if not copy.called:
            if isinstance(result, Failure):
                copy.errback(result)
            else:
                copy.callback(result)
        return result

    d.addBoth(passed)
    return copy


async def lookup(client: Client, service: str) -> Table:
    """Every instance of ``service`` at one consistent rev (one WALK)."""
    walk = await client.walk(f"{service_dir(service)}/*")
    return Table(
        service,
        walk.rev,
        {f.path.rsplit("/", 1)[1]: f.value.decode("utf-8", "replace") for f in walk.files},
    )


async def follow(client: Client, service: str) -> AsyncIterator[Table]:
    """The service's table now, then again after every change to it.

    The watch starts at ``table.rev + 1``: exactly the changes after the
    snapshot, none missed, none twice — even across node failover. If the
    watch fell behind the nodes' history (``TooLate``) a fresh snapshot is
    taken and yielded.
    """
    while True:
        table = await lookup(client, service)
        yield Table(service, table.rev, dict(table.instances))
        try:
            async for event in client.watch(f"{service_dir(service)}/*", table.rev + 1):
                name = event.path.rsplit("/", 1)[1]
                if event.op == "del":
                    table.instances.pop(name, None)
                else:
                    table.instances[name] = (event.value or b"").decode("utf-8", "replace")
                table.rev = event.rev
                yield Table(service, table.rev, dict(table.instances))
        except TooLate:
            continue


def format_table(table: Table) -> str:
    """``rev N`` then ``instance address`` lines, sorted."""
    lines = [f"rev {table.rev}"]
    lines += [f"{name} {addr}" for name, addr in sorted(table.instances.items())]
    return "\n".join(lines) + "\n"


async def _main(reactor: Any, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="service registry on doozer leases")
    parser.add_argument("-a", dest="uri", default=os.environ.get("DOOZER_URI"))
    sub = parser.add_subparsers(dest="verb", required=True)
    reg = sub.add_parser("register", help="register and stay registered until interrupted")
    reg.add_argument("-l", dest="ttl", type=int, default=10, help="lease ttl, seconds")
    reg.add_argument("service")
    reg.add_argument("instance")
    reg.add_argument("address")
    sub.add_parser("lookup").add_argument("service")
    sub.add_parser("follow").add_argument("service")
    args = parser.parse_args(argv)
    client = connect(args.uri, clock=reactor)

    def say(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if args.verb == "register":
        running = ensureDeferred(keep_registered(
            client, args.service, args.instance, args.address, args.ttl,
            lambda lease_id, rev: say(f"registered at rev {rev} on lease {lease_id}\n")))
        running.addErrback(lambda f: f.trap(CancelledError))
        ended = _copy(running)
        # on Ctrl-C/SIGTERM: leave the lease's block, so it is revoked and
        # the entry goes at once; shutdown waits for that
        def leave() -> "Deferred[None]":
            running.cancel()
            return ended

        reactor.addSystemEventTrigger("before", "shutdown", leave)
        await ended
    elif args.verb == "lookup":
        say(format_table(await lookup(client, args.service)))
    else:
        async for table in follow(client, args.service):
            say(format_table(table))
    await client.close()


def main(argv: Optional[list[str]] = None) -> None:
    """Run one registry command (see the module docstring)."""
    from twisted.internet.task import react

    react(_main, (sys.argv[1:] if argv is None else argv,))


if __name__ == "__main__":
    main()
