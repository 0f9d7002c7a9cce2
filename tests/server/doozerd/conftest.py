"""The fixtures of the doozerd-protocol tests: a fresh one-member node
(``n``, a :class:`nativeutil.Native`) and one in-memory connection to it
(``c``)."""

from __future__ import annotations

import pytest
from nativeutil import MemoryConn, Native


@pytest.fixture
def n() -> Native:
    return Native()


@pytest.fixture
def c(n: Native) -> MemoryConn:
    return n.conn()
