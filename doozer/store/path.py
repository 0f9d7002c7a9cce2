"""Paths and globs of the store (SPEC §1, §2).

A path is ``/`` or ``/`` followed by components joined by ``/``; a component
is 1–255 characters of ``[A-Za-z0-9._-]`` other than ``.`` and ``..``.

A glob is a path pattern with doozerd's wildcards: ``?`` one character of a
component, ``*`` any run of characters within a component, ``**`` any run of
characters across components (so ``/**`` matches every file).
"""

from __future__ import annotations

import functools
import re
from typing import Callable

from doozer.errors import DoozerError
from doozer.store.glob import nfa_matcher, regex_is_bounded

#: Longest component allowed by SPEC §1.
MAX_COMPONENT = 255

_COMPONENT_CHARS = r"A-Za-z0-9._\-"
# One regex for the common case: a valid path costs one C-level match. The
# dot components are refused separately because a regex for "not . or .."
# would be harder to read than the check itself.
_PATH_RE = re.compile(rf"(?:/[{_COMPONENT_CHARS}]{{1,{MAX_COMPONENT}}})+")
_DOT_RE = re.compile(r"/\.\.?(?:/|$)")
_BAD_CHAR_RE = re.compile(rf"[^{_COMPONENT_CHARS}]")
_GLOB_RE = re.compile(rf"/|(?:/[{_COMPONENT_CHARS}*?]+)+")
_BAD_GLOB_CHAR_RE = re.compile(rf"[^{_COMPONENT_CHARS}/*?]")
_WILDCARDS = ("*", "?")


def validate_path(path: str) -> str:
    """Check that ``path`` is a store path.

    :param path: the path to check, e.g. ``/a/b``.
    :returns: ``path`` unchanged.
    :raises DoozerError: ``BAD_PATH`` with a detail naming the problem.
    """
    if isinstance(path, str) and (path == "/" or (_PATH_RE.fullmatch(path) and not _DOT_RE.search(path))):
        return path
    raise DoozerError("BAD_PATH", _path_problem(path))


def _path_problem(path: object) -> str:
    """Say what is wrong with an invalid path (only called on failure)."""
    if not isinstance(path, str):
        return f"a path is a string, not {type(path).__name__}"
    if not path.startswith("/"):
        return f"path {path!r} must start with '/'"
    if path.endswith("/"):
        return f"path {path!r} must not end with '/' (only the root is '/')"
    for component in path[1:].split("/"):
        if component == "":
            return f"path {path!r} has an empty component ('//')"
        if component in (".", ".."):
            return f"path {path!r} has the component {component!r}, which is refused"
        if len(component) > MAX_COMPONENT:
            return (
                f"path {path!r} has a component of {len(component)} characters"
                f" (at most {MAX_COMPONENT})"
            )
        bad = _BAD_CHAR_RE.search(component)
        if bad:
            return (
                f"path {path!r} has the character {bad.group()!r};"
                " components use only A-Z a-z 0-9 . _ -"
            )
    return f"path {path!r} is not valid"  # pragma: no cover - every case is named above


def validate_glob(glob: str) -> str:
    """Check that ``glob`` is a valid glob pattern.

    :param glob: the pattern, e.g. ``/a/*/c`` or ``/**``.
    :returns: ``glob`` unchanged.
    :raises DoozerError: ``BAD_GLOB`` with a detail naming the problem.
    """
    if isinstance(glob, str) and _GLOB_RE.fullmatch(glob):
        return glob
    raise DoozerError("BAD_GLOB", _glob_problem(glob))


def _glob_problem(glob: object) -> str:
    """Say what is wrong with an invalid glob (only called on failure)."""
    if not isinstance(glob, str):
        return f"a glob is a string, not {type(glob).__name__}"
    if not glob.startswith("/"):
        return f"glob {glob!r} must start with '/'"
    if glob.endswith("/"):
        return f"glob {glob!r} must not end with '/' (only the glob '/')"
    bad = _BAD_GLOB_CHAR_RE.search(glob)
    if bad:
        return (
            f"glob {glob!r} has the character {bad.group()!r};"
            " globs use only A-Z a-z 0-9 . _ - / * ?"
        )
    return f"glob {glob!r} has an empty component ('//')"


def translate_glob(glob: str) -> str:
    """The regular expression (for ``re.fullmatch``) equivalent to ``glob``.

    doozerd's translation, and the reference the matchers are tested
    against. A backtracking engine can take exponential time on it
    (``/*a*a*a*a*b``), so :func:`compile_glob` only uses it when
    :func:`doozer.store.glob.regex_is_bounded` says so.

    :param glob: a valid glob (not checked here).
    """
    out = []
    i, n = 0, len(glob)
    while i < n:
        char = glob[i]
        if char == "*":
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def compile_glob(glob: str) -> Callable[[str], bool]:
    """A function telling whether a path matches ``glob``.

    Cached, so that thousands of watches on the same glob share one matcher.
    Every matcher runs in time linear in the glob times the path (SPEC §12):
    string equality, a prefix test, a regex whose backtracking is bounded
    (:func:`doozer.store.glob.regex_is_bounded`) or a bit-parallel NFA
    (:func:`doozer.store.glob.nfa_matcher`).

    :param glob: the pattern; validated first.
    :raises DoozerError: ``BAD_GLOB``.
    """
    validate_glob(glob)
    if not any(w in glob for w in _WILDCARDS):
        # A literal glob matches exactly one path: a string compare is
        # several times faster than a regex match.
        return glob.__eq__
    if glob.endswith("/**") and not any(w in glob[:-3] for w in _WILDCARDS):
        # The common "everything under a directory" watch; "/**" is the
        # degenerate case whose prefix is "/".
        head = glob[:-2]
        return lambda path: path.startswith(head)
    if regex_is_bounded(glob):
        # At most one star that the regex can retry at many lengths, and
        # nothing but literals after it: backtracking is bounded by
        # len(glob) * len(path) (see regex_is_bounded), and a match runs in C.
        fullmatch = re.compile(translate_glob(glob), re.DOTALL).fullmatch
        return lambda path: fullmatch(path) is not None
    # Stars that could be retried against each other: the NFA, linear in
    # the glob times the path whatever the glob (SPEC §12).
    return nfa_matcher(glob)


def glob_prefix(glob: str) -> str:
    """The deepest directory that every match of ``glob`` lies under.

    For a glob without wildcards this is the glob itself (it matches only
    that path). Used to index watch waiters: a change at path ``p`` can only
    wake waiters whose prefix is ``p`` or one of its ancestors.

    :param glob: a valid glob (not checked here).
    """
    if not any(w in glob for w in _WILDCARDS):
        return glob
    literal = []
    for component in glob[1:].split("/"):
        if "*" in component or "?" in component:
            break
        literal.append(component)
    return "/" + "/".join(literal)


def parent(path: str) -> str:
    """The directory holding ``path`` (``"/"`` for ``"/"`` itself).

    :param path: a valid path.
    """
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "/"


def split(path: str) -> tuple[str, str]:
    """``(parent directory, last component)``, like ``posixpath.split``.

    :param path: a valid path; ``split("/")`` is ``("/", "")``.
    """
    cut = path.rfind("/")
    return (path[:cut] if cut > 0 else "/", path[cut + 1 :])


def join(directory: str, name: str) -> str:
    """The path of entry ``name`` in ``directory``.

    :param directory: a valid path.
    :param name: one component.
    """
    return f"/{name}" if directory == "/" else f"{directory}/{name}"


def components(path: str) -> list[str]:
    """The components of ``path`` (``[]`` for the root).

    :param path: a valid path.
    """
    return [] if path == "/" else path[1:].split("/")


def ancestors(path: str) -> list[str]:
    """Every directory above ``path``, root first (``[]`` for the root).

    :param path: a valid path.
    """
    out = ["/"] if path != "/" else []
    cut = path.find("/", 1)
    while cut > 0:
        out.append(path[:cut])
        cut = path.find("/", cut + 1)
    return out
