"""doozerd's messages (doozer/server/doozerd/proto.py) against SPEC §7's field
table, as the spec-written client of tests/nativeutil.py builds them."""

from __future__ import annotations

from doozer.server.doozerd import proto
from nativeutil import Request, Response


def test_messages_match_the_spec_field_table() -> None:
    """The server's Request/Response have exactly SPEC §7's fields, numbers, types and enums."""
    for ours, spec in ((proto.Request, Request), (proto.Response, Response)):
        mine = {(f.name, f.number, f.type) for f in ours.DESCRIPTOR.fields}
        theirs = {(f.name, f.number, f.type) for f in spec.DESCRIPTOR.fields}
        assert mine == theirs
        for enum in spec.DESCRIPTOR.enum_types:
            mine_values = {v.name: v.number for v in ours.DESCRIPTOR.enum_types_by_name[enum.name].values}
            assert mine_values == {v.name: v.number for v in enum.values}
    assert proto.Request.DESCRIPTOR.file.package == "server"


def test_rev_zero_is_distinct_from_no_rev_on_the_wire() -> None:
    """Fields are proto2 optional: an explicit rev 0 survives encoding, an absent one stays absent."""
    with_zero = proto.Request.FromString(Request(verb=2, path="/a", rev=0).SerializeToString())
    without = proto.Request.FromString(Request(verb=2, path="/a").SerializeToString())
    assert with_zero.HasField("rev") and not without.HasField("rev")
