"""The nemesis's fault kinds: which are valid in which mode (no cluster runs)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.nemesis import DURABLE_KINDS, FAULT_KINDS, RESTART_KINDS, Nemesis, check_kinds


class _Fake:
    def __init__(self, durable: bool) -> None:
        self.durable = durable
        self.n = 3


def FakeCluster(durable: bool) -> Any:
    """What the nemesis's constructor looks at of a cluster."""
    return _Fake(durable)


def test_the_durable_kinds_are_the_others_and_the_restarts() -> None:
    assert DURABLE_KINDS == FAULT_KINDS + ("restart", "wholerestart")
    assert not set(RESTART_KINDS) & set(FAULT_KINDS)
    check_kinds(DURABLE_KINDS, durable=True)
    check_kinds(FAULT_KINDS, durable=False)


@pytest.mark.parametrize("kind", RESTART_KINDS)
def test_a_restart_kind_needs_durable_mode(kind: str) -> None:
    with pytest.raises(ValueError, match=f"'{kind}' restarts nodes from their data dirs.*--data-dir"):
        check_kinds(("pause", kind), durable=False)
    with pytest.raises(ValueError, match="needs durable mode"):
        Nemesis(FakeCluster(durable=False), 1, lambda m: None, ("pause", kind))
    Nemesis(FakeCluster(durable=True), 1, lambda m: None, ("pause", kind))


def test_unknown_or_no_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind 'reboot'"):
        check_kinds(("kill", "reboot"), durable=True)
    with pytest.raises(ValueError, match="no fault kind"):
        check_kinds((), durable=True)


def test_losing_the_log_needs_durable_mode() -> None:
    with pytest.raises(ValueError, match="self-test.*durable"):
        Nemesis(FakeCluster(durable=False), 1, lambda m: None, FAULT_KINDS, lose_log=True)


def test_kill_kinds_stay_valid_in_durable_mode(tmp_path: Any) -> None:
    nemesis = Nemesis(FakeCluster(durable=True), 7003, lambda m: None, DURABLE_KINDS)
    assert "kill" in nemesis.kinds and "claimkill" in nemesis.kinds
