"""check_history and the checker's command line (tests/faults/checker.py):
every checker that applies, on a whole history."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from .checker import check_history, main
from .histories import get, put, sim_logs, sim_watch, simulate
from .history import History


# ---------------------------------------------------------------------------
# Everything
# ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_simulated_logs_and_watches_pass(seed: int) -> None:
    """Logs and watch streams of a correct simulated run pass, with the full history check."""
    sim = simulate(seed, n_procs=5, n_ops=60, n_keys=3)
    watches = sim_watch(sim, "/**", 1, [3, 1, 5, 1000, 10]) + sim_watch(sim, "/k?", 2, [2, 2, 1000])
    hist = History(sim.ops + watches, sim_logs(sim))
    report = check_history(hist)
    assert report.ok, report.summary()


def test_command_line_exit_codes(tmp_path, capsys) -> None:
    """`python -m tests.faults.checker FILE` exits 0 for a valid history and 1 for a violation."""
    good = tmp_path / "good.jsonl"
    bad = tmp_path / "bad.jsonl"
    History([put("/a", 0, 1, "x", 3), get("/a", 2, 3, "x", 3)]).save(good)
    History([put("/a", 0, 1, "x", 3), get("/a", 2, 3, "y", 3)]).save(bad)
    assert main([str(good)]) == 0
    assert main([str(bad)]) == 1
    assert "linearizability: fail" in capsys.readouterr().out
