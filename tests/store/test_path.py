"""Tests for doozer.store.path and doozer.store.glob: path and glob validation, glob matching, prefixes."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from doozer.errors import DoozerError
from doozer.store.glob import glob_tokens, nfa_matcher, regex_is_bounded
from doozer.store.path import (
    ancestors,
    compile_glob,
    components,
    glob_prefix,
    join,
    parent,
    split,
    translate_glob,
    validate_glob,
    validate_path,
)

GOOD_PATHS = [
    "/",
    "/a",
    "/a/b",
    "/a.b",
    "/a-b",
    "/a_b",
    "/A9/z0",
    "/...",
    "/.a",
    "/a..",
    "/" + "x" * 255,
    "/ctl/cal/0",
]

# (path, words the detail must contain)
BAD_PATHS = [
    ("", "start with"),
    ("a", "start with"),
    ("a/b", "start with"),
    ("/a/", "end with"),
    ("//", "end with"),
    ("//a", "empty component"),
    ("/a//b", "empty component"),
    ("/.", "'.'"),
    ("/..", "'..'"),
    ("/a/./b", "'.'"),
    ("/a/../b", "'..'"),
    ("/" + "x" * 256, "256 characters"),
    ("/a b", "' '"),
    ("/a:b", "':'"),
    ("/a+b", "'+'"),
    ("/a*", "'*'"),
    ("/a?", "'?'"),
    ("/a世界", "'世'"),
    ("/a\n", "'\\n'"),
]


@pytest.mark.parametrize("path", GOOD_PATHS)
def test_valid_path_is_returned(path: str) -> None:
    """A valid path is returned unchanged."""
    assert validate_path(path) == path


@pytest.mark.parametrize("path,words", BAD_PATHS)
def test_invalid_path_is_bad_path_with_reason(path: str, words: str) -> None:
    """An invalid path raises BAD_PATH whose detail names the problem."""
    with pytest.raises(DoozerError) as info:
        validate_path(path)
    assert info.value.code == "BAD_PATH"
    assert words in info.value.detail


def test_non_string_path_is_bad_path() -> None:
    """A path that is not a string is BAD_PATH, not a TypeError."""
    with pytest.raises(DoozerError) as info:
        validate_path(b"/a")  # type: ignore[arg-type]
    assert info.value.code == "BAD_PATH"


GOOD_GLOBS = ["/", "/a", "/*", "/**", "/a/*/c", "/a?", "/*a*/b", "/**/a", "/a_b-c.d/**"]

# doozerd's own refused globs (store/glob_test.go) plus the trailing/empty cases.
BAD_GLOBS = [
    "",
    "a",
    "a/",
    "/ ",
    "/:",
    "//",
    "/a/",
    "/a+b",
    "/a^b",
    "/a$b",
    "/a[b",
    "/a]b",
    "/a(b",
    "/a)b",
    "/a世界",
    "/a//b",
    "/a\\b",
]


@pytest.mark.parametrize("glob", GOOD_GLOBS)
def test_valid_glob_is_returned(glob: str) -> None:
    """A valid glob is returned unchanged."""
    assert validate_glob(glob) == glob


@pytest.mark.parametrize("glob", BAD_GLOBS)
def test_invalid_glob_is_bad_glob(glob: str) -> None:
    """An invalid glob raises BAD_GLOB, from validate_glob and compile_glob alike."""
    for check in (validate_glob, compile_glob):
        with pytest.raises(DoozerError) as info:
            check(glob)
        assert info.value.code == "BAD_GLOB"
        assert info.value.detail


# doozerd's translation table (store/glob_test.go), as regexes for fullmatch.
TRANSLATIONS = [
    ("/", "/"),
    ("/a", "/a"),
    ("/a.b", r"/a\.b"),
    ("/a-b", r"/a\-b"),
    ("/a?", "/a[^/]"),
    ("/a/b", "/a/b"),
    ("/*", "/[^/]*"),
    ("/*/a", "/[^/]*/a"),
    ("/*a/b", "/[^/]*a/b"),
    ("/a*/b", "/a[^/]*/b"),
    ("/a*a/b", "/a[^/]*a/b"),
    ("/*a*/b", "/[^/]*a[^/]*/b"),
    ("/**", "/.*"),
    ("/**/a", "/.*/a"),
]


@pytest.mark.parametrize("glob,regex", TRANSLATIONS)
def test_translation_matches_doozerd(glob: str, regex: str) -> None:
    """A glob translates to the same regex as doozerd's translateGlob."""
    assert translate_glob(glob) == regex


# (glob, paths it matches, paths it does not match); the first four rows are
# doozerd's own cases.
MATCHES = [
    ("/a/b", ["/a/b"], ["/a/c", "/a/", "/a/b/", "/a/bc"]),
    ("/a?", ["/ab", "/ac"], ["/", "/abc", "/a", "/a/"]),
    ("/a*", ["/a", "/ab", "/abc"], ["/", "/a/", "/ba"]),
    ("/a**", ["/a", "/ab", "/abc", "/a/", "/a/b", "/ab/c"], ["/", "/ba"]),
    ("/**", ["/a", "/a/b/c", "/x.y"], []),
    ("/a/*/c", ["/a/b/c", "/a/xyz/c", "/a//c"], ["/a/b/d/c", "/a/b/c/d", "/a/c"]),
    ("/a/**", ["/a/b", "/a/b/c"], ["/a", "/ab", "/b/a"]),
    ("/**/c", ["/c/c", "/a/b/c", "/a/c"], ["/c", "/a/b/cd"]),
    ("/?/?", ["/a/b"], ["/ab/c", "/a/bc", "/a//"]),
    ("/*.txt", ["/a.txt", "/.txt"], ["/a/b.txt", "/atxt"]),
]


@pytest.mark.parametrize("glob,good,bad", MATCHES)
def test_glob_matching(glob: str, good: list[str], bad: list[str]) -> None:
    """A compiled glob matches exactly the paths doozerd's glob does."""
    match = compile_glob(glob)
    for path in good:
        assert match(path) is True, path
    for path in bad:
        assert match(path) is False, path


PREFIXES = [
    ("/", "/"),
    ("/a", "/a"),
    ("/a/b", "/a/b"),
    ("/**", "/"),
    ("/*", "/"),
    ("/a*", "/"),
    ("/a/**", "/a"),
    ("/a/b*", "/a"),
    ("/a/*/c", "/a"),
    ("/a/b/?", "/a/b"),
    ("/a/b/**/c", "/a/b"),
]


@pytest.mark.parametrize("glob,prefix", PREFIXES)
def test_glob_prefix(glob: str, prefix: str) -> None:
    """glob_prefix is the deepest literal directory, or the glob when literal."""
    assert glob_prefix(glob) == prefix


def test_path_helpers() -> None:
    """parent, split, join, components and ancestors agree on a few paths."""
    assert parent("/") == "/"
    assert parent("/a") == "/"
    assert parent("/a/b/c") == "/a/b"
    assert split("/") == ("/", "")
    assert split("/a") == ("/", "a")
    assert split("/a/b/c") == ("/a/b", "c")
    assert join("/", "a") == "/a"
    assert join("/a/b", "c") == "/a/b/c"
    assert components("/") == []
    assert components("/a/b") == ["a", "b"]
    assert ancestors("/") == []
    assert ancestors("/a") == ["/"]
    assert ancestors("/a/b/c") == ["/", "/a", "/a/b"]


# ------------------------------------------------------------ property tests


def reference_match(glob: str, path: str) -> bool:
    """An independent glob matcher: plain recursion over the two strings."""
    if not glob:
        return not path
    if glob.startswith("**"):
        return any(reference_match(glob[2:], path[i:]) for i in range(len(path) + 1))
    if glob[0] == "*":
        run = 0
        while run < len(path) and path[run] != "/":
            run += 1
        return any(reference_match(glob[1:], path[i:]) for i in range(run + 1))
    if not path:
        return False
    if glob[0] == "?":
        return path[0] != "/" and reference_match(glob[1:], path[1:])
    return glob[0] == path[0] and reference_match(glob[1:], path[1:])


# A small alphabet so that generated paths actually match generated globs.
_names = st.text(alphabet="ab.", min_size=1, max_size=3).filter(lambda c: c not in (".", ".."))
_paths = st.lists(_names, min_size=1, max_size=4).map(lambda cs: "/" + "/".join(cs))
_glob_parts = st.lists(
    st.sampled_from(["a", "b", ".", "*", "**", "?", "/"]), min_size=1, max_size=8
).map(lambda ps: "/" + "".join(ps))


@settings(max_examples=400, deadline=None)
@given(glob=_glob_parts, path=_paths)
def test_compiled_glob_equals_reference(glob: str, path: str) -> None:
    """compile_glob agrees with an independent recursive matcher on every valid glob."""
    try:
        validate_glob(glob)
    except DoozerError:
        return  # e.g. "//" or a trailing "/": not a glob
    assert compile_glob(glob)(path) == reference_match(glob, path)
    assert compile_glob(glob)(path) == (re.fullmatch(translate_glob(glob), path) is not None)


@settings(max_examples=200, deadline=None)
@given(glob=_glob_parts, path=_paths)
def test_every_match_lies_under_the_prefix(glob: str, path: str) -> None:
    """Any path a glob matches is the prefix itself or lies under it."""
    try:
        validate_glob(glob)
    except DoozerError:
        return
    if compile_glob(glob)(path):
        prefix = glob_prefix(glob)
        assert path == prefix or prefix == "/" or path.startswith(prefix + "/")


@given(path=_paths)
def test_generated_paths_are_valid(path: str) -> None:
    """Paths built from valid components pass validation."""
    assert validate_path(path) == path


# ------------------------------------------ the matchers against the reference

# Globs as token sequences: adjacent stars ("***" is "**" then "*"), stars at
# the start and end of components, "?" next to stars, "//" and a trailing "/"
# (not valid globs, but the NFA must still agree with the regex on them).
_any_glob = st.lists(
    st.sampled_from(["a", "b", "/", "*", "**", "?"]), min_size=0, max_size=8
).map(lambda ps: "/" + "".join(ps))
# Any string over the alphabet, not only valid paths: "//", "/a/", "", "a".
_any_path = st.text(alphabet="ab/", max_size=12)


def reference_regex(glob: str, path: str) -> bool:
    """The old matcher: doozerd's regex translation, fully matched."""
    return re.fullmatch(translate_glob(glob), path, re.DOTALL) is not None


@settings(max_examples=2000, deadline=None)
@given(glob=_any_glob, path=_any_path)
@example(glob="/***", path="/a/b")
@example(glob="/*/**", path="/a")
@example(glob="/**/*", path="/a/")
@example(glob="/a**b", path="/a/b")
@example(glob="/*?*", path="/")
@example(glob="/**?**?**b", path="/a/ab")
@example(glob="/*a*a*b", path="/aaaaab")
def test_nfa_equals_the_reference_regex(glob: str, path: str) -> None:
    """The NFA matcher answers exactly what re.fullmatch of translate_glob does."""
    assert nfa_matcher(glob)(path) == reference_regex(glob, path)


@settings(max_examples=1000, deadline=None)
@given(glob=_any_glob, path=_any_path)
def test_compiled_glob_equals_the_reference_regex(glob: str, path: str) -> None:
    """compile_glob, whichever matcher it picks, agrees with the reference regex."""
    try:
        validate_glob(glob)
    except DoozerError:
        return
    assert compile_glob(glob)(path) == reference_regex(glob, path)


def test_nfa_equals_the_reference_on_every_small_case() -> None:
    """Every token string of up to 4 tokens against every path of up to 5 characters."""
    tokens = ["a", "b", "/", "*", "**", "?"]
    paths = ["/" + "".join(p) for n in range(5) for p in itertools.product("ab/", repeat=n)]
    for n in range(5):
        for parts in itertools.product(tokens, repeat=n):
            glob = "/" + "".join(parts)
            match = nfa_matcher(glob)
            regex = re.compile(translate_glob(glob), re.DOTALL)
            for path in paths:
                assert match(path) == (regex.fullmatch(path) is not None), (glob, path)


def test_nfa_on_characters_the_glob_does_not_name() -> None:
    """? and * take any character but '/', ** any at all; a literal only itself."""
    assert nfa_matcher("/?")("/é") is True
    assert nfa_matcher("/*")("/x\ny") is True
    assert nfa_matcher("/**")("/x/\n") is True
    assert nfa_matcher("/a*")("/b") is False
    assert nfa_matcher("/?")("//") is False


@pytest.mark.parametrize(
    "pattern,path,matched",
    [("*", "", True), ("**b", "a/b", True), ("*b", "a/b", False), ("*?*", "", False)],
)
def test_nfa_on_a_pattern_that_starts_with_a_star(pattern: str, path: str, matched: bool) -> None:
    """A leading star may match nothing from the very first state on."""
    assert nfa_matcher(pattern)(path) is matched
    assert reference_regex(pattern, path) is matched


TOKENS = [
    ("/", ["/"]),
    ("/a?", ["/", "a", "?"]),
    ("/*", ["/", "*"]),
    ("/**", ["/", "**"]),
    ("/***", ["/", "**", "*"]),
    ("/****", ["/", "**", "**"]),
    ("/*a**", ["/", "*", "a", "**"]),
]


@pytest.mark.parametrize("glob,tokens", TOKENS)
def test_glob_tokens_pair_stars_from_the_left(glob: str, tokens: list[str]) -> None:
    """Stars pair into ** from the left, as translate_glob reads them."""
    assert glob_tokens(glob) == tokens


# (glob, whether a backtracking regex is provably bounded on it)
BOUNDED = [
    ("/svc/*/addr", True),  # * before '/': one way only
    ("/a/*/b/*", True),  # * at the end: one way only
    ("/fault/s1/g*/k?", True),
    ("/**", True),
    ("/a/**", True),
    ("/**/c", True),  # one ambiguous star, then only literals
    ("/*.txt", True),
    ("/a*b?", True),
    ("/**a*", False),  # a star after the ambiguous one
    ("/**/*", False),
    ("/*a*b", False),
    ("/***", False),  # ** then *: the ** is ambiguous, the * follows it
    ("/*a*a*a*a*b", False),
    ("/**?**?**?**?**?**?**?**?**?**Z", False),
]


@pytest.mark.parametrize("glob,bounded", BOUNDED)
def test_regex_is_bounded(glob: str, bounded: bool) -> None:
    """Only globs with at most one ambiguous star, followed by literals, keep the regex."""
    assert regex_is_bounded(glob) is bounded
