"""Mutations on the wire (doozer/store/mutation.py): every kind round-trips,
and bytes from a hostile peer or a bug decode to a clear refusal."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from doozer.store import mutation as mut
from doozer.store.mutation import MalformedMutation, Mutation, Op

ids = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=1, max_size=16)
paths = st.text("abc/", min_size=1, max_size=12).map(lambda s: "/" + s)
ops = st.builds(Op, st.sampled_from([mut.SET, mut.DEL]), paths, st.binary(max_size=8),
                st.one_of(st.just(""), ids))
mutations = st.builds(
    Mutation,
    st.sampled_from([mut.SET, mut.DEL, mut.NOP, mut.TXN, mut.GRANT, mut.REVOKE, mut.RENEW,
                     mut.EXPIRE]),
    ids,
    st.integers(0, 2**40),
    paths,
    st.binary(max_size=16),
    st.integers(-1, 2**31),
    until=st.integers(0, 2**40),
    compare=st.lists(st.tuples(paths, st.integers(-1, 99)), max_size=3).map(tuple),
    lease=st.one_of(st.just(""), ids),
    ttl=st.integers(0, 3600),
    leases=st.lists(ids, max_size=4).map(tuple),
    basis=st.tuples(st.integers(0, 2**40), st.integers(0, 4000)),
    ops=st.lists(ops, max_size=4).map(tuple),
)


@given(mutations)
def test_every_mutation_round_trips(m: Mutation) -> None:
    assert Mutation.decode(m.encode()) == m


def test_a_plain_write_keeps_its_eight_fields() -> None:
    """Old mutations (no extras) are as before: a store snapshot or a peer
    of this version reads them, and they cost no more bytes."""
    m = mut.set_("N", 7, "/a", b"x", until=9)
    assert len(msgpack.unpackb(m.encode())) == 8


@pytest.mark.parametrize("extras", [
    "not a map",
    {},
    {"z": 1},
    {"l": 5},
    {"t": "10"},
    {"r": "L1"},
    {"r": [1]},
    {"r": ["L"] * (mut.MAX_RENEW + 1)},
    {"b": [1]},
    {"b": ["1", 2]},
    {"o": [[mut.NOP, "/a", b"", ""]]},
    {"o": [[mut.SET, "/a", "text", ""]]},
    {"o": [[mut.SET, "/a", b""]]},
    {"o": [[mut.DEL, "/a", b"", ""]] * (mut.MAX_OPS + 1)},
])
def test_bad_extras_are_refused(extras: object) -> None:
    fields = [mut.TXN, "N", 1, "", b"", -1, 9, [], extras]
    with pytest.raises(MalformedMutation):
        Mutation.decode(msgpack.packb(fields, use_bin_type=True))


def test_an_unknown_kind_or_a_tenth_field_is_refused() -> None:
    for fields in ([99, "N", 1, "", b"", -1, 9, []],
                   [mut.SET, "N", 1, "/a", b"", -1, 9, [], {"l": "L"}, 0]):
        with pytest.raises(MalformedMutation):
            Mutation.decode(msgpack.packb(fields, use_bin_type=True))
