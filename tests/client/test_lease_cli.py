"""``doozer lease grant|keepalive|revoke|list`` and ``-l ID`` on set and add
(doozer/client/lease_cli.py) against a node in memory."""

from __future__ import annotations

import io

from clientutil import World, outcome
from twisted.internet.defer import ensureDeferred

from doozer.client.cli import parse_args, run


def cli(w: World, *argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    d = ensureDeferred(run(parse_args(argv), w.client(), out, err, stdin))
    status = w.resolve(d)
    return status, out.getvalue().decode(), err.getvalue().decode()


def test_grant_set_with_a_lease_list_and_revoke() -> None:
    w = World()
    status, out, err = cli(w, "lease", "grant", "30")
    assert (status, err) == (0, "")
    lease_id = out.strip()
    assert w.node.store.leases.get(lease_id) is not None
    assert cli(w, "set", "-l", lease_id, "/svc/a", "-1", stdin=b"x")[0] == 0
    assert cli(w, "add", f"--lease={lease_id}", "/svc/b", stdin=b"y")[0] == 0
    assert cli(w, "lease", "list") == (0, f"{lease_id} 30 /svc/a /svc/b\n", "")
    status, out, err = cli(w, "lease", "revoke", lease_id)
    assert (status, out, err) == (0, f"{w.node.store.rev}\n", "")
    assert cli(w, "lease", "list") == (0, "", "")
    status, out, err = cli(w, "lease", "revoke", lease_id)
    assert status == 2 and "NOENT" in err
    status, out, err = cli(w, "set", "-l", lease_id, "/svc/a", "-1", stdin=b"x")
    assert status == 2 and lease_id in err


def test_bad_lease_command_lines_are_usage_errors() -> None:
    w = World()
    for argv in (("lease", "grant", "ten"), ("lease", "frob"), ("lease", "revoke"),
                 ("lease", "list", "x")):
        status, out, err = cli(w, *argv)
        assert status != 0 and out == "" and err.startswith("doozer: "), argv
    assert cli(w, "lease", "grant", "0")[0] != 0


def test_keepalive_renews_until_the_lease_is_gone() -> None:
    w = World()
    lease_id = cli(w, "lease", "grant", "3")[1].strip()
    out, err = io.BytesIO(), io.BytesIO()
    done = outcome(ensureDeferred(run(parse_args(["lease", "keepalive", lease_id]),
                                      w.client(), out, err)))
    w.advance(10)  # more than three ttls: kept alive
    assert done == [] and w.node.store.leases.get(lease_id) is not None
    w.resolve(w.node.revoke(lease_id))
    w.advance(2)
    assert done == [2] and "NOENT" in err.getvalue().decode()
