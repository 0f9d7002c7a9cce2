"""``doozer lease grant|keepalive|revoke|list`` (SPEC §9), kept out of
:mod:`doozer.client.commands` for its renewal loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.task import deferLater

from doozer.client.errors import Unavailable, Unreachable

if TYPE_CHECKING:
    from doozer.client.commands import Context


async def run_lease(ctx: "Context", verb: str, arg: str) -> None:
    from doozer.client.commands import UsageError, parse_int

    client = ctx.client
    if verb == "grant":
        lease_id, _ = await client.grant(parse_int(arg, "TTL", minimum=1))
        ctx.line(lease_id)
    elif verb == "revoke" and arg:
        ctx.line(await client.revoke(arg))
    elif verb == "list" and not arg:
        for lease in await client.leases():
            ctx.line(" ".join([lease["id"], str(lease["ttl"])] + lease["files"]))
    elif verb == "keepalive" and arg:
        await keep_alive(ctx, arg)
    else:
        raise UsageError("usage: doozer lease grant TTL | keepalive ID | revoke ID | list")


async def keep_alive(ctx: "Context", lease_id: str) -> None:
    """Renew every ttl/3 until interrupted; a renewal that fails is retried
    every ttl/10 until ttl has passed since the send of the last one
    confirmed, then the last error is raised (the lease may be gone)."""
    client = ctx.client
    clock = client.clock
    ttl = float((await client.lease_info(lease_id))["ttl"])
    # a read renews nothing: it only starts the bound on retries
    confirmed_until = clock.seconds() + ttl
    while True:
        sent = clock.seconds()
        try:
            await client.keepalive(lease_id)
        except (Unavailable, Unreachable):
            if clock.seconds() + ttl / 10 >= confirmed_until:
                raise
            await deferLater(clock, ttl / 10, lambda: None)
            continue
        confirmed_until = sent + ttl
        await deferLater(clock, ttl / 3, lambda: None)
