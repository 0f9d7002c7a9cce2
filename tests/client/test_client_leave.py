"""``Client.leave`` and ``doozer leave``: sent to the first address only."""

from __future__ import annotations

import pytest

from clientutil import World
from doozer.client.errors import ClientError, Unreachable


def test_leave_is_never_failed_over_to_another_node() -> None:
    """The first address is down: the leave fails there and is not sent to
    the second (which would make another node leave instead)."""
    world = World("a:1", "b:1")
    world.net.kill("a:1")
    with pytest.raises(Unreachable):
        world.resolve(world.client("a:1", "b:1").leave())
    assert ("DELETE", "b:1") not in world.net.calls
    assert world.node.member and not world.node.leaving.left


def test_a_refusal_names_its_code() -> None:
    world = World("a:1")
    with pytest.raises(ClientError) as e:
        world.resolve(world.client().leave())
    assert "NO_QUORUM" in str(e.value)
