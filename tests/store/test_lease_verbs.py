"""The lease verbs applied to a store (doozer/store/lease_verbs.py, SPEC §9,
CONSENSUS.md §L1 and §L4)."""

from __future__ import annotations

import json
from typing import Any

from doozer.store import mutation as mut
from doozer.store import snapshot
from doozer.store.mutation import Op
from doozer.store.tree import Store

_n = iter(range(10**9))


def _do(store: Store, kind: int, path: str = "", value: bytes = b"", **extra: Any) -> Any:
    m = mut.Mutation(kind, "c", next(_n), path, value, until=10**9, **extra)
    return store.apply([m.encode()])[0]


def _files(store: Store) -> dict[str, bytes]:
    return {f.path: f.value for f in store.walk("/**")}


def _granted(store: Store, lease: str = "L1", ttl: int = 10) -> Any:
    out = _do(store, mut.GRANT, lease=lease, ttl=ttl)
    assert out.error is None and out.took_rev
    return out


def test_grant_takes_a_rev_and_shows_the_lease() -> None:
    s = Store()
    out = _granted(s)
    assert s.rev == out.rev == 1
    assert json.loads(s.get("/ctl/lease/L1").value) == {"ttl": 10}  # type: ignore[union-attr]
    assert s.leases.get("L1").basis == (1, 0)  # type: ignore[union-attr]
    for bad in ({"lease": "L2", "ttl": 0}, {"lease": "L2", "ttl": 3601}, {"lease": "a/b", "ttl": 5}):
        assert _do(s, mut.GRANT, **bad).error.code == "BAD_ARG"
    assert _do(s, mut.GRANT, lease="L1", ttl=5).error.code == "OTHER"


def test_a_write_with_a_lease_needs_the_lease() -> None:
    s = Store()
    out = _do(s, mut.SET, "/svc/a", b"x", lease="nope")
    assert out.error.code == "NOENT" and "lease nope" in out.error.detail and _files(s) == {}
    _granted(s)
    assert _do(s, mut.SET, "/ctl/cal/5", b"", lease="L1").error.code == "FORBIDDEN"
    assert _do(s, mut.SET, "/svc/a", b"x", lease="L1").error is None
    assert s.leases.lease_of("/svc/a") == "L1"


def test_revoke_deletes_the_files_and_the_lease_at_one_rev() -> None:
    s = Store()
    _granted(s)
    for p in ("/svc/a", "/svc/b", "/other/c"):
        _do(s, mut.SET, p, b"x", lease="L1")
    _do(s, mut.SET, "/svc/b", b"y")  # a write without the lease detaches it
    _do(s, mut.SET, "/keep", b"k")
    out = _do(s, mut.REVOKE, lease="L1")
    assert out.error is None
    assert _files(s) == {"/svc/b": b"y", "/keep": b"k"}
    events = s.events("/**", out.rev, 100)
    assert {e.rev for e in events} == {out.rev}
    assert sorted(e.path for e in events) == ["/ctl/lease/L1", "/other/c", "/svc/a"]
    assert all(e.op == "del" for e in events)
    assert _do(s, mut.REVOKE, lease="L1").error.code == "NOENT"


def test_a_deleted_file_is_no_longer_the_leases() -> None:
    s = Store()
    _granted(s)
    _do(s, mut.SET, "/a", b"", lease="L1")
    _do(s, mut.DEL, "/a")
    _do(s, mut.SET, "/a", b"again")  # recreated without a lease
    _do(s, mut.REVOKE, lease="L1")
    assert _files(s) == {"/a": b"again"}


def test_renew_takes_no_rev_and_moves_the_basis() -> None:
    s = Store()
    _granted(s)
    rev = s.rev
    nop = mut.Mutation(mut.NOP, "c", next(_n), until=10**9)
    renew = mut.Mutation(mut.RENEW, "c", next(_n), until=10**9, leases=("L1", "gone"))
    out = s.apply([nop.encode(), renew.encode()], 7)[1]
    assert out.norev and not out.took_rev and out.gone == ("gone",)
    assert s.rev == rev + 1  # only the NOP took one
    assert s.leases.get("L1").basis == (7, 1)  # type: ignore[union-attr]


def test_expire_acts_only_on_the_basis_it_timed_from() -> None:
    s = Store()
    _granted(s)  # basis (1, 0)
    _do(s, mut.SET, "/m", b"", lease="L1")
    s.apply([mut.Mutation(mut.RENEW, "c", next(_n), until=10**9, leases=("L1",)).encode()], 5)
    rev = s.rev
    stale = _do(s, mut.EXPIRE, lease="L1", basis=(1, 0))  # a renewal was ordered after it
    assert stale.norev and stale.gone == ("L1",) and s.rev == rev and "/m" in _files(s)
    acts = _do(s, mut.EXPIRE, lease="L1", basis=(5, 0))
    assert acts.took_rev and acts.rev == rev + 1 and _files(s) == {}
    again = _do(s, mut.EXPIRE, lease="L1", basis=(5, 0))  # another member's, later: harmless
    assert again.norev and s.rev == rev + 1


def test_a_txn_op_attaches_to_its_lease() -> None:
    s = Store()
    _granted(s)
    out = _do(s, mut.TXN, ops=(Op(mut.SET, "/leader", b"n1", "L1"), Op(mut.SET, "/term", b"7")))
    assert out.error is None and s.leases.lease_of("/leader") == "L1"
    assert s.leases.lease_of("/term") is None


def test_snapshots_and_adopt_carry_leases_and_lease_answers() -> None:
    s = Store()
    _granted(s)
    _do(s, mut.SET, "/a", b"", lease="L1")
    renew = mut.Mutation(mut.RENEW, "c", next(_n), until=10**9, leases=("L1", "X"))
    first = s.apply([renew.encode()], 9)[0]
    t = snapshot.load(snapshot.dump(s))
    assert t.leases.dump() == s.leases.dump()
    again = t.apply([renew.encode()], 10)[0]  # a duplicate: the original answer
    assert again.duplicate and again.norev and again.gone == first.gone == ("X",)
    u = Store()
    u.adopt(t)
    assert u.leases.lease_of("/a") == "L1"
    assert _do(u, mut.REVOKE, lease="L1").error is None and _files(u) == {}
    assert s.leases.lease_of("/a") == "L1"  # adopt took t's table, not s's
