"""The runner's refusals (before any node is started): the restart kinds
and the checkers' self-test need durable mode."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.run import main, run


@pytest.mark.parametrize("kinds", [("restart",), ("kill", "wholerestart")])
def test_run_refuses_restart_kinds_without_data_dirs(kinds: tuple) -> None:
    with pytest.raises(ValueError, match="needs durable mode"):
        run(kinds=kinds, quiet=True)


def test_run_refuses_the_self_test_without_data_dirs() -> None:
    with pytest.raises(ValueError, match="self-test of the checkers"):
        run(lose_log=True, quiet=True)


@pytest.mark.parametrize("argv, message", [
    (["--kinds", "restart"], "it needs durable mode (--data-dir)"),
    (["--kinds", "kill,reboot", "--data-dir"], "unknown fault kind 'reboot'"),
    (["--lose-log"], "--lose-log (a self-test of the checkers) needs --data-dir"),
])
def test_the_cli_says_what_is_wrong(capsys: Any, argv: list, message: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
