"""The ``node`` fixture of the doozer command's tests (test_cli*.py): one
real node per module."""

from __future__ import annotations

from typing import Any, Iterator

import pytest


@pytest.fixture(scope="module")
def node(tmp_path_factory: Any) -> Iterator[Any]:
    from procutil import NodeProcess

    proc = NodeProcess(str(tmp_path_factory.mktemp("cli")))
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()
