"""Recipe: a service registry (name service) on the public doozer client.

Each instance of a service registers its address in a file
``/services/<service>/<instance>``; clients look the service up with one WALK
and then follow it with a WATCH that starts at the rev just after the WALK,
so they never miss (or see twice) a change between the two.

Run it against a node::

    python examples/registry.py -a doozer:?ca=127.0.0.1:8046 register web w1 10.0.0.1:80
    python examples/registry.py lookup web
    python examples/registry.py follow web          # prints the table after each change
    python examples/registry.py deregister web w1

See docs/recipes.md for the discussion.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional

from doozer.client import Client, NoEnt, connect

ROOT = "/services"


def service_dir(service: str) -> str:
    """The directory holding a service's instances."""
    return f"{ROOT}/{service}"


@dataclass
class Table:
    """A service's instances (name -> address) as of store rev ``rev``."""

    service: str
    rev: int
    instances: dict[str, str] = field(default_factory=dict)


async def register(client: Client, service: str, instance: str, address: str) -> int:
    """Publish ``instance`` of ``service`` at ``address``; returns the file's rev.

    Re-registering overwrites (rev -1): the latest address wins.
    """
    return await client.set(f"{service_dir(service)}/{instance}", address.encode(), -1)


async def deregister(client: Client, service: str, instance: str) -> bool:
    """Remove ``instance``; False if it was not registered."""
    try:
        await client.delete(f"{service_dir(service)}/{instance}", -1)
    except NoEnt:
        return False
    return True


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
    snapshot, none missed, none twice — even across node failover.
    """
    table = await lookup(client, service)
    yield Table(service, table.rev, dict(table.instances))
    async for event in client.watch(f"{service_dir(service)}/*", table.rev + 1):
        name = event.path.rsplit("/", 1)[1]
        if event.op == "del":
            table.instances.pop(name, None)
        else:
            table.instances[name] = (event.value or b"").decode("utf-8", "replace")
        table.rev = event.rev
        yield Table(service, table.rev, dict(table.instances))


def format_table(table: Table) -> str:
    """``rev N`` then ``instance address`` lines, sorted."""
    lines = [f"rev {table.rev}"]
    lines += [f"{name} {addr}" for name, addr in sorted(table.instances.items())]
    return "\n".join(lines) + "\n"


async def _main(reactor: Any, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="service registry on doozer")
    parser.add_argument("-a", dest="uri", default=os.environ.get("DOOZER_URI"))
    sub = parser.add_subparsers(dest="verb", required=True)
    reg = sub.add_parser("register")
    reg.add_argument("service")
    reg.add_argument("instance")
    reg.add_argument("address")
    dereg = sub.add_parser("deregister")
    dereg.add_argument("service")
    dereg.add_argument("instance")
    sub.add_parser("lookup").add_argument("service")
    sub.add_parser("follow").add_argument("service")
    args = parser.parse_args(argv)
    client = connect(args.uri, clock=reactor)
    if args.verb == "register":
        print(await register(client, args.service, args.instance, args.address))
    elif args.verb == "deregister":
        if not await deregister(client, args.service, args.instance):
            raise SystemExit(f"{args.instance} was not registered")
    elif args.verb == "lookup":
        sys.stdout.write(format_table(await lookup(client, args.service)))
    else:
        async for table in follow(client, args.service):
            sys.stdout.write(format_table(table))
            sys.stdout.flush()
    await client.close()


def main(argv: Optional[list[str]] = None) -> None:
    """Run one registry command (see the module docstring)."""
    from twisted.internet.task import react

    react(_main, (sys.argv[1:] if argv is None else argv,))


if __name__ == "__main__":
    main()
