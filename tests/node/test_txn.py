"""Transactions through a node (doozer/node/txn.py, Node.txn; SPEC §10):
what is refused before anything is proposed, the client write rules, and
transactions racing on a simulated 3-node cluster."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

import nodesim
from doozer.errors import DoozerError
from doozer.node import Node
from doozer.node.txn import MAX_REV, check
from doozer.store import mutation
from doozer.store.mutation import DEL, SET, Op
from doozer.testing import single_node


def run(clock: Clock, d: Any) -> Any:
    """The result (or the failure's exception) of ``d`` once the node decided."""
    out: list = []
    d.addBoth(out.append)
    clock.advance(0)
    clock.advance(0)
    assert out, "the transaction was not answered"
    result = out[0]
    return getattr(result, "value", result)


def refused(fn: Any, *args: Any, **kwargs: Any) -> DoozerError:
    with pytest.raises(DoozerError) as e:
        fn(*args, **kwargs)
    return e.value


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def node(clock: Clock) -> Node:
    return single_node(clock)


def test_ops_apply_at_one_rev_and_answer_it(node: Node, clock: Clock) -> None:
    before = node.store.rev
    rev = run(clock, node.txn([("/leader", 0)], [Op(SET, "/leader", b"n1"), Op(SET, "/term", b"1")],
                              client="c"))
    assert rev == node.store.rev > before
    assert node.store.get("/leader").rev == node.store.get("/term").rev == rev  # type: ignore[union-attr]
    assert node.admission.state()["pending"] == 0


def test_a_failed_compare_answers_its_index_and_changes_nothing(node: Node, clock: Clock) -> None:
    first = run(clock, node.set("/leader", b"n0"))
    err = run(clock, node.txn([("/other", -1), ("/leader", 0)], [Op(SET, "/leader", b"n1")]))
    assert isinstance(err, DoozerError) and err.code == "REV_MISMATCH"
    assert err.extra == {"index": 1, "path": "/leader", "rev": first, "in": "compare"}
    assert node.store.get("/leader").value == b"n0"  # type: ignore[union-attr]
    assert node.store.rev == first + 1  # the attempt took a rev


def test_a_failing_op_answers_its_index(node: Node, clock: Clock) -> None:
    run(clock, node.set("/f", b""))
    err = run(clock, node.txn([], [Op(SET, "/ok", b""), Op(SET, "/f/below", b"")]))
    assert isinstance(err, DoozerError) and err.code == "NOTDIR"
    assert (err.extra["index"], err.extra["path"], err.extra["in"]) == (1, "/f/below", "ops")
    assert refused(node.store.get, "/ok").code == "NOENT"


def test_a_compare_on_a_directory_says_it_was_the_compare(node: Node, clock: Clock) -> None:
    """ISDIR may be a compare's or an op's: ``in`` says which."""
    run(clock, node.set("/d/f", b""))
    err = run(clock, node.txn([("/d", -1)], [Op(SET, "/x", b"")]))
    assert (err.code, err.extra["index"], err.extra["in"]) == ("ISDIR", 0, "compare")
    err = run(clock, node.txn([("/x", -1)], [Op(SET, "/y", b""), Op(SET, "/d", b"")]))
    assert (err.code, err.extra["index"], err.extra["in"]) == ("ISDIR", 1, "ops")


@pytest.mark.parametrize("compare, ops, code, index, where", [
    ([("bad//path", 0)], [], "BAD_PATH", 0, "compare"),
    ([("/a", -2)], [], "BAD_ARG", 0, "compare"),
    ([("/a", MAX_REV + 1)], [], "BAD_ARG", 0, "compare"),
    ([("/a", True)], [], "BAD_ARG", 0, "compare"),
    ([], [Op(SET, "/ok", b""), Op(SET, "/a/../b", b"")], "BAD_PATH", 1, "ops"),
    ([], [Op(SET, "/a", b""), Op(DEL, "/a")], "BAD_ARG", 1, "ops"),
    ([], [Op(SET, "/ctl/name", b"")], "FORBIDDEN", 0, "ops"),
    ([], [Op(DEL, "/ctl/lease/L")], "FORBIDDEN", 0, "ops"),
    ([], [Op(SET, "/ok", b""), Op(SET, "/ctl/cal/1", b"")], "FORBIDDEN", 1, "ops"),
    ([], [Op(SET, "/big", b"x" * 32769)], "TOO_LARGE", 0, "ops"),
    ([], [Op(SET, "/l", b"", lease="not a lease")], "BAD_ARG", 0, "ops"),
    ([], [Op(DEL, "/l", b"x")], "BAD_ARG", 0, "ops"),
    ([], [Op(mutation.NOP, "/l")], "BAD_ARG", 0, "ops"),
])
def test_refused_before_anything_is_proposed(node: Node, compare: list, ops: list, code: str,
                                             index: int, where: str) -> None:
    proposed: list = []
    node.sequencer.propose = lambda item, now: proposed.append(item)  # type: ignore[union-attr]
    err = refused(node.txn, compare, ops, client="c")
    assert (err.code, err.extra["index"], err.extra["in"]) == (code, index, where)
    assert proposed == [] and node.admission.state()["pending"] == 0


def test_counts_are_bounded() -> None:
    ok = check([("/c", 0)] * 128, [Op(SET, f"/o{i}", b"") for i in range(128)], 10)
    assert len(ok[0]) == len(ok[1]) == 128
    assert refused(check, [("/c", 0)] * 129, [], 10).code == "BAD_ARG"
    assert refused(check, [], [Op(SET, f"/o{i}", b"") for i in range(129)], 10).code == "BAD_ARG"


def test_a_non_member_answers_readonly(clock: Clock) -> None:
    from doozer.node import build_node
    from doozer.server.config import Config
    import random

    outsider = build_node(Config(pulse=0), clock, "OUTSIDER", rng=random.Random(1))
    assert refused(outsider.txn, [], [Op(SET, "/a", b"")]).code == "READONLY"


def test_admission_counts_the_txn_bytes_and_the_quota(node: Node, clock: Clock) -> None:
    """The pending-bytes bound sees the whole txn; the quota refuses one that
    sets, not one that only deletes."""
    node.admission.max_bytes = 2000
    held: list = []
    node.sequencer.propose = lambda item, now: held.append(item)  # type: ignore[union-attr]
    ops = [Op(SET, f"/o{i}", b"x" * 100) for i in range(25)]  # 2,500 bytes of values
    assert refused(node.txn, [], ops, client="c").code == "BUSY"
    assert held == []
    node.admission.max_bytes = 10**9
    node.admission.quota = node.store.size + 10
    assert refused(node.txn, [], ops[:1], client="c").code == "NOSPACE"
    node.txn([], [Op(DEL, "/o1")], client="c")
    assert len(held) == 1 and mutation.Mutation.decode(held[0]).kind == mutation.TXN


def test_a_txn_too_large_for_a_datagram_is_refused(clock: Clock) -> None:
    node = single_node(clock, max_value=60000)
    ops = [Op(SET, f"/o{i}", b"x" * 30000) for i in range(3)]
    assert refused(node.txn, [], ops, client="c").code == "TOO_LARGE"
    assert node.admission.state()["pending"] == 0


# -- on a simulated 3-node cluster ---------------------------------------------


def test_candidates_on_three_nodes_elect_exactly_one_leader() -> None:
    """20 candidates spread over 3 real nodes race for /leader with a
    compare at rev 0: one wins, the others get REV_MISMATCH on the compare,
    and every node holds the winner's txn whole at one rev."""
    sim = nodesim.NodeSim(11, 3)
    sim.start()
    end = sim.now + 10
    while sim.now < end and not sim.healthy():
        sim.run_for(0.25)
    assert sim.healthy(), sim.describe()
    nodes = sim.live()
    answers: dict[int, Any] = {}
    for k in range(20):
        sn = nodes[k % 3]
        d = sn.node.txn([("/leader", 0)], [Op(SET, "/leader", f"c{k}".encode()),
                                          Op(SET, f"/term/c{k}", b"1")], client=f"c{k}")
        d.addBoth(lambda r, k=k: answers.__setitem__(k, getattr(r, "value", r)))
    sim.run_for(3)
    assert len(answers) == 20
    won = {k: r for k, r in answers.items() if isinstance(r, int)}
    assert len(won) == 1, answers
    (winner, rev), = won.items()
    for k, r in answers.items():
        if k != winner:
            assert (r.code, r.extra["index"], r.extra["in"], r.extra["rev"]) == (
                "REV_MISMATCH", 0, "compare", rev), r
    sim.run_for(1)
    for sn in sim.live():
        store = sn.node.store
        assert store.get("/leader").value == f"c{winner}".encode()  # type: ignore[union-attr]
        assert [(e.rev, e.path) for e in store.events("/**", rev, 10)
                if e.rev == rev] == [(rev, "/leader"), (rev, f"/term/c{winner}")]
