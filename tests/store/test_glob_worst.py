"""The globs of issue 16 that froze a node answer at once (SPEC §12).

``/*a*a*a*a*b`` took 16 s on one 255-character name when globs were
backtracking regexes, and every further ``*a`` multiplied that by 40. No test
here asserts a time (timings never go in pass/fail tests): they count work
instead — characters the matcher reads, lines of it that run, steps of a
backtracker — and check answers against a dynamic-programming reference.
Run with ``-s`` to see the wall times.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from types import CodeType, FrameType
from typing import Any, Callable, Iterator, Optional
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apiutil import Harness
from doozer.store import mutation as mut
from doozer.store.glob import ambiguous_stars, glob_tokens, nfa_matcher, regex_is_bounded
from doozer.store.path import compile_glob
from doozer.store import Store

NAME = "a" * 255

#: The globs of the issue, and more of the same kind.
WORST = [
    "/*a*a*a*a*b",
    "/*a*a*a*a*a*a*a*a*a*a*a*a*b",
    "/**?**?**?**?**?**?**?**?**?**Z",
    "/**a**a**a**a**b",
    "/**a*a*a*a*a*a*b",
    "/d/*a*a*a*a*Z",
    "/**/*a*a*a*b",
]

#: Long paths to match them against: one name, a name per level, a near miss.
LONG_PATHS = [
    "/" + NAME,
    "/" + NAME[:-1] + "b",
    "/" + "/".join([NAME] * 50),
    "/d/" + NAME,
    "/d/" + NAME[:-1] + "Z",
    "/" + "/".join([NAME] * 49 + [NAME[:-1] + "Z"]),
]

#: Lines of the matcher's loop run per character of the path (the loop body
#: is straight-line code), with some slack for the lines around the loop.
LINES_PER_CHARACTER = 8
LINES_AROUND = 8


def dp_match(glob: str, path: str) -> bool:
    """The textbook dynamic program: ``ok[i]`` says whether the tokens seen
    so far match ``path[:i]``. ``O(len(glob) * len(path))``, and independent
    of the NFA under test."""
    n = len(path)
    ok = [True] + [False] * n
    for token in glob_tokens(glob):
        new = [False] * (n + 1)
        if token in ("*", "**"):
            for i in range(n + 1):
                new[i] = ok[i] or (i > 0 and new[i - 1] and (token == "**" or path[i - 1] != "/"))
        else:
            for i in range(1, n + 1):
                c = path[i - 1]
                new[i] = ok[i - 1] and (c == token or (token == "?" and c != "/"))
        ok = new
    return ok[n]


class CountingPath(str):
    """A path that counts the characters a matcher reads from it."""

    read = 0

    def __iter__(self) -> Iterator[str]:
        for c in str.__iter__(self):
            self.read += 1
            yield c


def lines_run(code: CodeType, call: Callable[[], Any]) -> tuple[Any, int]:
    """``call()`` and how many lines of ``code`` ran meanwhile (sys.settrace)."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Optional[Callable[..., Any]]:
        return local if frame.f_code is code else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = call()
    finally:
        sys.settrace(previous)
    return result, count


NFA_CODE = nfa_matcher("/*a*b").__code__


class Exhausted(Exception):
    """The backtracker went past its budget of steps."""


def backtrack(glob: str, path: str, budget: int) -> tuple[bool, int]:
    """A backtracking matcher that counts its steps, as a regex engine works:
    each star scans its longest run, then tries lengths longest first.

    :returns: ``(matched, steps)``.
    :raises Exhausted: past ``budget`` steps.
    """
    tokens = glob_tokens(glob)
    steps = 0

    def go(t: int, i: int) -> bool:
        nonlocal steps
        while True:
            steps += 1
            if steps > budget:
                raise Exhausted
            if t == len(tokens):
                return i == len(path)
            token = tokens[t]
            if token in ("*", "**"):
                end = i
                while end < len(path) and (token == "**" or path[end] != "/"):
                    end += 1
                steps += end - i
                return any(go(t + 1, k) for k in range(end, i - 1, -1))
            if i == len(path):
                return False
            c = path[i]
            if c != token and not (token == "?" and c != "/"):
                return False
            t, i = t + 1, i + 1

    return go(0, 0), steps


# ------------------------------------------------------------ the matcher


@pytest.mark.parametrize("glob", WORST)
def test_worst_globs_go_to_the_nfa(glob: str) -> None:
    """Globs whose stars a regex could retry against each other never become a regex."""
    assert len(ambiguous_stars(glob_tokens(glob))) > 1
    assert not regex_is_bounded(glob)
    assert compile_glob(glob).__code__ is NFA_CODE


@pytest.mark.parametrize("glob", WORST)
@pytest.mark.parametrize("path", LONG_PATHS, ids=lambda p: f"{len(p)}-{p[-1]}")
def test_worst_globs_read_each_character_once(glob: str, path: str) -> None:
    """The matcher reads each character of the path at most once, and runs a
    bounded number of its lines per character: whatever the stars."""
    counted = CountingPath(path)
    started = time.perf_counter()
    matched, lines = lines_run(NFA_CODE, lambda: compile_glob(glob)(counted))
    elapsed = time.perf_counter() - started
    print(f"\n{glob} on {len(path)} characters: {matched}, {elapsed * 1e3:.2f} ms (traced)")
    assert matched == dp_match(glob, path)
    assert 0 < counted.read <= len(path)
    assert lines <= LINES_PER_CHARACTER * counted.read + LINES_AROUND


def test_more_stars_cost_no_more_steps() -> None:
    """Each extra *a once multiplied the time by 40; now the lines run stay the same."""
    path = "/" + NAME
    counts = set()
    for stars in (4, 8, 16, 32):
        glob = "/" + "*a" * stars + "*b"
        counted = CountingPath(path)
        matched, lines = lines_run(NFA_CODE, lambda: compile_glob(glob)(counted))
        assert matched is False
        assert counted.read == len(path)
        counts.add(lines)
    assert len(counts) == 1


@pytest.mark.parametrize("glob", ["/*a*a*a*a*b", "/**?**?**?**?**?**?**?**?**?**Z"])
def test_a_backtracker_explodes_on_the_worst_globs(glob: str) -> None:
    """Why they must not be regexes: backtracking passes a million steps on
    one 255-character name (the bounded globs below take a few thousand)."""
    with pytest.raises(Exhausted):
        backtrack(glob, "/" + NAME, budget=10**6)


_bounded_globs = (
    st.lists(st.sampled_from(["a", "b", "/", "*", "**", "?"]), min_size=1, max_size=10)
    .map(lambda ps: "/" + "".join(ps))
    .filter(regex_is_bounded)
)
# Long runs of one letter are what makes backtracking retry.
_hostile_paths = st.lists(
    st.tuples(st.sampled_from("ab/"), st.integers(1, 40)), min_size=1, max_size=8
).map(lambda runs: "/" + "".join(c * k for c, k in runs))


@settings(max_examples=500, deadline=None)
@given(glob=_bounded_globs, path=_hostile_paths)
def test_bounded_globs_backtrack_at_most_glob_times_path(glob: str, path: str) -> None:
    """regex_is_bounded's promise: on the globs it lets a regex take, a
    backtracker does at most a few steps per (token, character) pair."""
    m, n = len(glob_tokens(glob)), len(path)
    matched, steps = backtrack(glob, path, budget=10**7)
    assert matched == dp_match(glob, path)
    assert steps <= 4 * (m + 1) * (n + 1)


# ------------------------------------------------------------ the store

_requests = itertools.count(1)


def long_names(count: int, seed: int = 16) -> list[str]:
    """``count`` distinct paths of 255-character names, some nested, most
    all ``a`` but for the last character (so that ``*a*a*...`` keeps going)."""
    rng = random.Random(seed)
    paths: list[str] = []
    while len(paths) < count:
        body = "".join(rng.choice("aaaaaaab") for _ in range(254))
        name = body + rng.choice("abZ")
        where = len(paths) % 3
        path = ("/" + name, "/d/" + name, "/d/" + NAME[:-1] + "Z/" + name)[where]
        if path not in paths and path != "/d/" + NAME[:-1] + "Z":
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def store() -> Store:
    """A store of ~50 files with 255-character names."""
    store = Store()
    store.apply(
        [mut.set_("t", next(_requests), p, p[-3:].encode(), until=10**9).encode() for p in long_names(50)]
    )
    return store


def test_walk_answers_the_worst_globs(store: Store) -> None:
    """walk with each worst glob returns exactly the files the reference matches,
    and the matcher runs a bounded number of lines per character of those names."""
    everything = store.walk("/**")
    assert len(everything) == 50
    characters = sum(len(f.path) for f in everything)
    matched_any = False
    for glob in WORST:
        started = time.perf_counter()
        found, lines = lines_run(NFA_CODE, lambda: store.walk(glob))
        elapsed = time.perf_counter() - started
        print(f"\nwalk {glob}: {len(found)} files, {elapsed * 1e3:.2f} ms (traced)")
        assert found == [f for f in everything if dp_match(glob, f.path)]
        assert lines <= LINES_PER_CHARACTER * characters + LINES_AROUND * len(everything)
        matched_any = matched_any or bool(found)
    assert matched_any


def test_events_answer_the_worst_globs(store: Store) -> None:
    """events (the history scan of a watch) agree with the reference on the worst globs."""
    history = store.events("/**", 1, 1000)
    assert len(history) == 50
    for glob in WORST:
        started = time.perf_counter()
        found = store.events(glob, 1, 1000)
        print(f"\nevents {glob}: {len(found)}, {(time.perf_counter() - started) * 1e3:.2f} ms")
        assert found == [e for e in history if dp_match(glob, e.path)]


def test_a_watch_on_a_worst_glob_wakes_on_a_match_only() -> None:
    """A waiting watch with a worst glob ignores long names it does not match
    and fires on the one it does."""
    store = Store()
    glob = "/**?**?**?**?**?**?**?**?**?**Z"
    got: list = []
    store.watch(glob, 1, 10).addCallback(got.append)
    store.apply([mut.set_("t", next(_requests), "/" + NAME, b"", until=10**9).encode()])
    assert got == []
    hit = "/x/" + NAME[:-1] + "Z"
    store.apply([mut.set_("t", next(_requests), hit, b"", until=10**9).encode()])
    assert [e.path for e in got[0]] == [hit]


# ------------------------------------------------------------ the HTTP API


def test_walk_over_http_with_the_read_only_secret() -> None:
    """GET /v1/walk with a worst glob and only the read-only secret is a
    prompt 200 with the matching files."""
    h = Harness(rw=b"rw", ro=b"ro")
    paths = long_names(50, seed=12)
    for path in paths:
        assert h.call("PUT", "/v1/store" + path, b"v", Authorization="Bearer rw").code == 200
    for glob in WORST:
        started = time.perf_counter()
        reply = h.get("/v1/walk?glob=" + quote(glob, safe="/"), Authorization="Bearer ro")
        print(f"\nGET /v1/walk?glob={glob}: {(time.perf_counter() - started) * 1e3:.2f} ms")
        assert reply.code == 200
        expected = sorted(p for p in paths if dp_match(glob, p))
        assert sorted(f["path"] for f in reply.json["files"]) == expected
