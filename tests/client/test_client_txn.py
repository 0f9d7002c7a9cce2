"""Client.txn and ``doozer txn FILE`` (SPEC §10) against a node in memory."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from clientutil import World
from twisted.internet.defer import ensureDeferred

from doozer.client import BadArg, BadPath, IsDir, NoEnt, RevMismatch, TooLarge
from doozer.client.cli import parse_args, run
from doozer.client.txn import txn_body


def test_txn_applies_its_ops_at_one_rev_and_returns_it() -> None:
    w = World()
    c = w.client()
    w.write("/cfg/old", b"x")
    rev = w.resolve(c.txn(compare=[("/leader", 0)],
                          ops=[("set", "/leader", b"n1"), ("set", "/bin", b"\x00\xff"),
                               ("set", "/text", "é"), ("del", "/cfg/old")]))
    assert rev == w.node.store.rev
    walk = w.resolve(c.walk("/**"))
    got = {f.path: (f.rev, f.value) for f in walk.files if not f.path.startswith("/ctl/")}
    assert got == {"/leader": (rev, b"n1"), "/bin": (rev, b"\x00\xff"), "/text": (rev, "é".encode())}


def test_a_failed_compare_raises_rev_mismatch_with_index_and_rev() -> None:
    w = World()
    c = w.client()
    current = w.write("/leader", b"n0")
    with pytest.raises(RevMismatch) as info:
        w.resolve(c.txn(compare=[("/x", -1), ("/leader", 0)], ops=[("set", "/leader", "n1")]))
    err = info.value
    assert (err.index, err.rev, err.extra["path"], err.extra["in"]) == (1, current, "/leader", "compare")
    assert w.resolve(c.get("/leader")).value == b"n0"


@pytest.mark.parametrize("ops, error, index", [
    ([("set", "/a", b""), ("del", "/missing")], NoEnt, 1),
    ([("set", "/a/b", b""), ("set", "/a", b"")], IsDir, 1),
    ([("set", "/a", b""), ("set", "bad", b"")], BadPath, 1),
    ([("set", "/a", b""), ("del", "/a")], BadArg, 1),
    ([("set", "/a", b""), ("set", "/b", b"x" * 33000)], TooLarge, 1),
])
def test_a_failing_op_raises_its_class_with_its_index(ops: list, error: type, index: int) -> None:
    w = World()
    c = w.client()
    with pytest.raises(error) as info:
        w.resolve(c.txn(ops=ops))
    assert info.value.index == index and info.value.extra["in"] == "ops"


@pytest.mark.parametrize("compare, ops", [
    ([("/a",)], []),
    ([("/a", "0")], []),
    ([], [("put", "/a", b"")]),
    ([], [("set", "/a")]),
    ([], [("set", "/a", 5)]),
    ([], [("del", "/a", b"")]),
    ([], ["set /a"]),
])
def test_a_malformed_op_fails_locally(compare: list, ops: list) -> None:
    with pytest.raises(BadArg):
        txn_body(compare, ops)


def test_the_body_is_the_spec_json() -> None:
    body = json.loads(txn_body([("/l", 0)], [("set", "/l", b"n1", "L7"), ("set", "/b", b"\xff"),
                                             ("del", "/o")]))
    assert body == {"compare": [{"path": "/l", "rev": 0}],
                    "ops": [{"op": "set", "path": "/l", "value": "n1", "lease": "L7"},
                            {"op": "set", "path": "/b", "value": "/w==", "encoding": "base64"},
                            {"op": "del", "path": "/o"}]}


def test_errors_without_an_index_say_none() -> None:
    w = World()
    with pytest.raises(NoEnt) as info:
        w.resolve(w.client().get("/missing"))
    assert info.value.index is None


# ----------------------------------------------------------------------
# the CLI, in memory


def cli(w: World, *argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    d = ensureDeferred(run(parse_args(argv), w.client(), out, err, stdin))
    status = w.resolve(d)
    return status, out.getvalue().decode(), err.getvalue().decode()


def test_cli_txn_from_a_file_and_from_stdin(tmp_path: Any) -> None:
    w = World()
    doc = {"compare": [{"path": "/leader", "rev": 0}], "ops": [{"op": "set", "path": "/leader", "value": "n1"}]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    status, out, err = cli(w, "txn", str(path))
    assert (status, out, err) == (0, f"{w.node.store.rev}\n", "")
    doc = {"ops": [{"op": "del", "path": "/leader"}]}
    status, out, err = cli(w, "txn", "-", stdin=json.dumps(doc).encode())
    assert (status, out, err) == (0, f"{w.node.store.rev}\n", "")


def test_cli_txn_exits_1_on_a_failed_compare_naming_it(tmp_path: Any) -> None:
    w = World()
    w.write("/leader", b"n0")
    doc = {"compare": [{"path": "/leader", "rev": 0}], "ops": []}
    status, out, err = cli(w, "txn", "-", stdin=json.dumps(doc).encode())
    assert (status, out) == (1, "")
    assert err.startswith("doozer: REV_MISMATCH: ") and err.count("\n") == 1
    assert "(at compare 0 of the transaction)" in err


@pytest.mark.parametrize("body, code, where", [
    (b'{"ops": [{"op": "set", "path": "/a", "value": ""}, {"op": "del", "path": "/nope"}]}',
     "NOENT", "op 1"),
    (b'{"ops": [{"op": "put", "path": "/a"}]}', "BAD_ARG", "op 0"),
    (b"not json", "BAD_ARG", None),
])
def test_cli_txn_exits_2_on_other_failures(body: bytes, code: str, where: str | None) -> None:
    status, out, err = cli(World(), "txn", "-", stdin=body)
    assert (status, out) == (2, "")
    assert err.startswith(f"doozer: {code}: ") and err.count("\n") == 1
    if where is not None:
        assert f"(at {where} of the transaction)" in err


def test_cli_txn_of_a_missing_file_exits_2(tmp_path: Any) -> None:
    status, out, err = cli(World(), "txn", str(tmp_path / "missing.json"))
    assert status == 2 and err.startswith("doozer: cannot read ") and err.count("\n") == 1
