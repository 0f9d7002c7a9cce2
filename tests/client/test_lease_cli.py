"""``doozer lease grant|keepalive|revoke|list`` and ``-l ID`` on set and add
(doozer/client/lease_cli.py) against a node in memory."""

from __future__ import annotations

import io

import pytest
from clientutil import World, outcome
from twisted.internet.defer import ensureDeferred

from doozer.client.cli import UsageError, parse_args, run


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


def test_every_spelling_of_l_attaches_on_set_and_add() -> None:
    """SPEC §9's ``-l ID`` on set and add, before or after the command, as
    ``-l ID``, ``-lID``, ``-l=ID`` and ``--lease=ID``; a file written
    without it is detached again."""
    w = World()
    lease_id = cli(w, "lease", "grant", "30")[1].strip()
    argvs = [("-l", lease_id, "add", "/l/a"), ("add", f"-l{lease_id}", "/l/b"),
             ("add", "/l/c", f"-l={lease_id}"), ("set", f"--lease={lease_id}", "/l/d", "0"),
             (f"-l{lease_id}", "set", "/l/e", "-1")]
    for argv in argvs:
        assert cli(w, *argv, stdin=b"x")[:3:2] == (0, ""), argv
    leases = w.node.store.leases
    assert [leases.lease_of(f"/l/{n}") for n in "abcde"] == [lease_id] * 5
    assert cli(w, "set", "/l/a", "-1", stdin=b"y")[0] == 0
    assert leases.lease_of("/l/a") is None
    assert cli(w, "lease", "list")[1] == f"{lease_id} 30 /l/b /l/c /l/d /l/e\n"


def test_l_without_an_id_or_with_a_bad_one_fails_and_writes_nothing() -> None:
    w = World()
    rev = w.node.store.rev
    with pytest.raises(UsageError, match="-l needs a value"):
        parse_args(["add", "/l/a", "-l"])
    for bad in ("a/b", "x" * 65, "\u00e9"):
        status, out, err = cli(w, "add", "-l", bad, "/l/a", stdin=b"x")
        assert (status, out) == (2, "") and "BAD_ARG" in err and "not a lease id" in err, bad
    assert w.node.store.rev == rev


def test_help_shows_l_where_it_applies() -> None:
    w = World()
    assert "-l ID" in cli(w, "help")[1]
    head = "usage: doozer [-a URI] [-r REV] [-t DURATION] [-l ID] add PATH\n"
    assert cli(w, "help", "add")[1].startswith(head)
    assert "-l ID" not in cli(w, "help", "get")[1].splitlines()[0]
