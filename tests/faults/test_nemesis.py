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


class _Node:
    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.text = "started\n"
        self.signals: list[int] = []

    def read_log(self) -> str:
        return self.text

    def signal(self, sig: int) -> None:
        self.signals.append(sig)


class _Restarting(_Fake):
    """Records the order of kills, lost logs and restarts; a restart of
    slot 1 claims a slot again (it was back after --timeout)."""

    def __init__(self, durable: bool) -> None:
        super().__init__(durable)
        self.slots = [_Node(f"127.0.0.1:{1000 + i}") for i in range(self.n)]
        self.done: list[tuple[str, int]] = []

    def addr(self, slot: int) -> str:
        return self.slots[slot].addr

    def kill(self, slot: int) -> None:
        self.done.append(("kill", slot))

    def lose_log(self, slot: int) -> list[str]:
        self.done.append(("lose_log", slot))
        return ["log-00000001"]

    def restart(self, slot: int, wait: bool = True) -> None:
        self.done.append(("restart", slot))
        self.slots[slot].text += "restarts in cluster\n" + ("claiming free CAL slot 1\n" if slot == 1 else "")

    def wait_up(self, slot: int) -> None:
        self.done.append(("up", slot))


@pytest.mark.parametrize("lose_log", [False, True])
def test_a_whole_restart_kills_all_then_restarts_all_and_notes_the_claims(lose_log: bool) -> None:
    c = _Restarting(durable=True)
    nemesis = Nemesis(c, 1, lambda m: None, ("wholerestart",), lose_log=lose_log)
    after = nemesis._wholerestart()
    lost = [("lose_log", s) for s in range(3)] if lose_log else []
    assert c.done == [("kill", 0), ("kill", 1), ("kill", 2), *lost,
                      ("restart", 0), ("restart", 1), ("restart", 2), ("up", 0), ("up", 1), ("up", 2)]
    assert all(n.signals == [9] for n in c.slots)  # SIGKILL to every one before any wait
    after()
    assert nemesis.restart_claims == [False, True, False]
    kinds = [e["fault"] for e in nemesis.events]
    assert kinds == ["wholerestart", *(["lose-log"] * len(lost)), "restarted", "restarted", "restarted",
                     "restart-claims"]
    # the claims note is bookkeeping: the fault window stays open until "healthy"
    assert nemesis.windows() == [(nemesis.events[0]["at"], float("inf"))]
