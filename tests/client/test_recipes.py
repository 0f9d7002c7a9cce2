"""The recipes of docs/recipes.md (examples/election.py, examples/registry.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest
from clientutil import World, outcome
from twisted.internet.defer import ensureDeferred

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))

import election  # noqa: E402
import registry  # noqa: E402

KEY = "/election/master"


def _candidate(w: World, name: str, log: list, lease: float = 6.0) -> Any:
    return election.Candidate(
        w.client(), KEY, name, w.clock, lease,
        on_change=lambda master, holder: log.append((name, master, holder)),
    )


# ----------------------------------------------------------------------
# election


def test_first_candidate_becomes_master_and_the_second_follows_it() -> None:
    """The first to CAS the empty key is master; a later candidate follows it."""
    w = World()
    log: list = []
    alice, bob = _candidate(w, "alice", log), _candidate(w, "bob", log)
    alice.start()
    w.settle()
    bob.start()
    w.settle()
    assert alice.is_master and not bob.is_master
    assert bob.holder == "alice"
    assert w.resolve(w.client().get(KEY)).value == b"alice"


def test_a_live_master_keeps_its_lease_for_ever() -> None:
    """A master refreshing every lease/3 is never taken over."""
    w = World()
    log: list = []
    alice, bob = _candidate(w, "alice", log), _candidate(w, "bob", log)
    alice.start()
    w.settle()
    bob.start()
    w.advance(60)
    assert alice.is_master and not bob.is_master


def test_when_the_master_dies_a_follower_takes_over_after_one_lease() -> None:
    """A master that stops refreshing loses the key to a follower once a lease passes."""
    w = World()
    log: list = []
    alice, bob = _candidate(w, "alice", log), _candidate(w, "bob", log)
    alice.start()
    w.settle()
    bob.start()
    w.advance(3)
    alice.stop()  # dies: no refresh, no resign
    w.advance(4)
    assert not bob.is_master
    w.advance(10)
    assert bob.is_master
    assert w.resolve(w.client().get(KEY)).value == b"bob"


def test_a_deposed_master_learns_it_at_its_next_refresh() -> None:
    """If someone else took the key, the old master's refresh fails and it steps down."""
    w = World()
    log: list = []
    alice = _candidate(w, "alice", log)
    alice.start()
    w.settle()
    w.write(KEY, b"mallory")
    w.advance(3)
    assert not alice.is_master
    assert alice.holder == "mallory"
    assert ("alice", False, "") in log


def test_a_resigning_master_hands_over_at_once() -> None:
    """resign() deletes the key, so a follower becomes master without waiting a lease."""
    w = World()
    log: list = []
    alice, bob = _candidate(w, "alice", log, lease=60), _candidate(w, "bob", log, lease=60)
    alice.start()
    w.settle()
    bob.start()
    w.settle()
    alice.stop()
    w.resolve(ensureDeferred(alice.resign()))
    w.settle()
    assert bob.is_master and not alice.is_master


def test_two_simultaneous_takeovers_elect_exactly_one() -> None:
    """Two followers racing for an expired key: exactly one wins the CAS."""
    w = World()
    log: list = []
    alice = _candidate(w, "alice", log)
    others = [_candidate(w, n, log) for n in ("bob", "carol")]
    alice.start()
    w.settle()
    for c in others:
        c.start()
    w.settle()
    alice.stop()
    w.advance(20)
    assert sum(c.is_master for c in others) == 1


# ----------------------------------------------------------------------
# registry


def test_lookup_returns_every_registered_instance_at_one_rev() -> None:
    """register publishes addresses; lookup returns them all with the rev read at."""
    w = World()
    c = w.client()
    w.resolve(ensureDeferred(registry.register(c, "web", "w1", "10.0.0.1:80")))
    w.resolve(ensureDeferred(registry.register(c, "web", "w2", "10.0.0.2:80")))
    w.resolve(ensureDeferred(registry.register(c, "db", "d1", "10.0.0.9:5432")))
    table = w.resolve(ensureDeferred(registry.lookup(c, "web")))
    assert table.instances == {"w1": "10.0.0.1:80", "w2": "10.0.0.2:80"}
    assert table.rev == w.node.store.rev


def test_follow_yields_the_table_after_each_change_without_gaps() -> None:
    """follow gives the snapshot, then a new table for each register/deregister, in order."""
    w = World()
    c = w.client()
    w.resolve(ensureDeferred(registry.register(c, "web", "w1", "a")))
    tables: list = []

    async def run() -> None:
        async for table in registry.follow(w.client(), "web"):
            tables.append(table.instances)

    done = outcome(ensureDeferred(run()))
    w.settle()
    w.resolve(ensureDeferred(registry.register(c, "web", "w2", "b")))
    w.resolve(ensureDeferred(registry.register(c, "web", "w1", "a2")))
    assert w.resolve(ensureDeferred(registry.deregister(c, "web", "w2")))
    assert not w.resolve(ensureDeferred(registry.deregister(c, "web", "nope")))
    w.settle()
    assert tables == [
        {"w1": "a"},
        {"w1": "a", "w2": "b"},
        {"w1": "a2", "w2": "b"},
        {"w1": "a2"},
    ]
    assert done == []


def test_format_table_lists_instances_sorted() -> None:
    """The printed table is the rev then 'instance address' lines, sorted."""
    table = registry.Table("web", 7, {"b": "2", "a": "1"})
    assert registry.format_table(table) == "rev 7\na 1\nb 2\n"


# ----------------------------------------------------------------------
# the examples as programs, against a real node


@pytest.fixture(scope="module")
def node(tmp_path_factory: Any) -> Iterator[Any]:
    from procutil import NodeProcess

    proc = NodeProcess(str(tmp_path_factory.mktemp("recipes")))
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


def _example(name: str, *args: str) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "examples", name), *args]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=ROOT)


def _read_until(proc: subprocess.Popen, text: str, seconds: float = 20.0) -> list[str]:
    """Lines of proc's stdout until one contains text (fails after seconds)."""
    import selectors

    lines: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sel.select(timeout=0.1):
            line = proc.stdout.readline().decode()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line.strip())
            if text in line:
                return lines
    raise AssertionError(f"{text!r} not seen in {lines}")


@pytest.mark.slow
def test_registry_example_runs_from_the_command_line(node: Any) -> None:
    """examples/registry.py registers, looks up and deregisters against a real node."""
    uri = f"doozer:?ca={node.addr}"
    run = lambda *a: subprocess.run(_example("registry.py", "-a", uri, *a), env=_env(),  # noqa: E731
                                    capture_output=True, timeout=30)
    assert run("register", "web", "w1", "10.0.0.1:80").returncode == 0
    out = run("lookup", "web")
    assert out.returncode == 0 and out.stdout.decode().splitlines()[1:] == ["w1 10.0.0.1:80"]
    assert run("deregister", "web", "w1").returncode == 0


@pytest.mark.slow
def test_election_example_fails_over_when_the_master_is_killed(node: Any) -> None:
    """Two election.py processes: kill -9 the master and the other takes over."""
    uri = f"doozer:?ca={node.addr}"
    args = ["-a", uri, "-k", "/election/cli", "-l", "2"]
    alice = subprocess.Popen(_example("election.py", *args, "alice"), env=_env(), stdout=subprocess.PIPE)
    bob = None
    try:
        _read_until(alice, "alice is master")
        bob = subprocess.Popen(_example("election.py", *args, "bob"), env=_env(), stdout=subprocess.PIPE)
        _read_until(bob, "bob follows alice")
        alice.send_signal(signal.SIGKILL)
        _read_until(bob, "bob is master", seconds=15)
    finally:
        for p in (alice, bob):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
