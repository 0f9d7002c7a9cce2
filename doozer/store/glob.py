"""Glob matching in time linear in the glob times the path (SPEC §2, §12).

A glob is read as a sequence of *tokens*: a literal character, ``?`` (one
character other than ``/``), ``*`` (any run of characters without ``/``) or
``**`` (any run of characters); ``**`` pairs greedily from the left, so
``***`` is ``**`` then ``*``, exactly as :func:`doozer.store.path.translate_glob`
reads it.

Two matchers come from here:

- :func:`nfa_matcher`, a Thompson NFA simulated bit-parallel in one Python
  int (the extended Shift-And of Navarro and Raffinot, *Flexible Pattern
  Matching in Strings*, §4.5, "optional and repeatable characters"): one
  state bit per token, a constant number of int operations per path
  character, so ``O(len(path) * len(glob) / word)`` whatever the glob;
- :func:`regex_is_bounded`, which tells :func:`doozer.store.path.compile_glob`
  when a backtracking regular expression provably costs no more than that
  (and then runs in C, several times faster than any Python loop).

A star is *ambiguous* when the regular expression can try several lengths
for it that each lead on to more work: a ``*`` not followed by ``/`` or the
end of the glob, or a ``**`` not at the end. The others can only match one
way: ``*`` before ``/`` must stop at the next ``/`` (``[^/]*`` cannot eat
one), ``*`` and ``**`` at the end must reach the end of the path.
"""

from __future__ import annotations

from typing import Callable

#: The wildcard tokens.
STAR = "*"
STARSTAR = "**"
ANY = "?"


def glob_tokens(glob: str) -> list[str]:
    """The tokens of ``glob``: ``"**"``, ``"*"``, ``"?"`` or one literal character.

    :param glob: a glob (validity is not checked here).
    """
    out = []
    i, n = 0, len(glob)
    while i < n:
        if glob.startswith(STARSTAR, i):
            out.append(STARSTAR)
            i += 2
        else:
            out.append(glob[i])
            i += 1
    return out


def ambiguous_stars(tokens: list[str]) -> list[int]:
    """Indexes of the stars of ``tokens`` that a regex may retry at many lengths.

    :param tokens: from :func:`glob_tokens`.
    """
    last = len(tokens) - 1
    out = []
    for i, token in enumerate(tokens):
        if token == STARSTAR and i < last:
            out.append(i)
        elif token == STAR and i < last and tokens[i + 1] != "/":
            out.append(i)
    return out


def regex_is_bounded(glob: str) -> bool:
    """Whether a backtracking regex for ``glob`` runs in ``O(len(glob) * len(path))``.

    True when the glob has no ambiguous star, or exactly one that only
    literals and ``?`` follow (``/**/config``, ``/*.txt``, ``/a*b?``):

    - Without an ambiguous star, every star has at most one length after
      which the match can go on (up to the next ``/``, or to the end of the
      path); every other length fails on the very next token, at once. The
      regex engine therefore walks one chain of choices, and when that chain
      fails each star's other lengths cost one step each: ``O(len(glob) +
      len(path))`` in all.
    - With one ambiguous star, the part before it is such a chain, so the
      star is reached at one position only; it then tries at most
      ``len(path) + 1`` lengths, and after each the rest of the glob is a
      fixed run of literals and ``?`` checked in ``O(len(glob))``:
      ``O(len(glob) * len(path))`` in all.

    Any other glob (``/*a*b``, ``/**/*/x``, ``/**?**Z``...) can make a regex
    try lengths of one star for every length of another — exponential in
    the number of stars (16 s for ``/*a*a*a*a*b`` on a 255-character name)
    — and goes to :func:`nfa_matcher` instead.

    :param glob: a valid glob.
    """
    tokens = glob_tokens(glob)
    ambiguous = ambiguous_stars(tokens)
    if not ambiguous:
        return True
    if len(ambiguous) > 1:
        return False
    return not any(t in (STAR, STARSTAR) for t in tokens[ambiguous[0] + 1 :])


def nfa_matcher(glob: str) -> Callable[[str], bool]:
    """A function telling whether a whole path matches ``glob``, without backtracking.

    State bit ``j`` means "the path read so far matches the first ``j``
    tokens"; bit 0 is the start, bit ``len(tokens)`` accepts. Reading one
    character ``c`` moves every live state at once::

        d = ((d << 1) & step[c]) | (d & loop[c])    # consume c
        d = d | closure(d)                          # a star may match nothing

    ``step[c]`` has bit ``j + 1`` for each token ``j`` that is ``c`` itself,
    or ``?`` when ``c`` is not ``/``; ``loop[c]`` keeps a star's bit set
    while it eats ``c`` (``*`` anything but ``/``, ``**`` anything). The
    closure (bit ``j`` set makes bit ``j + 1`` set when token ``j`` is a
    star, along runs of adjacent stars) is three int operations: with ``F``
    the last bit of each run of star bits and ``I`` the bit just below it,
    a borrow of ``(d | F) - I`` runs up each run from its entry to the
    first live bit, and exactly the bits it did not cross are the ones to
    set. Every character therefore costs the same few operations on an int
    of ``len(tokens) + 1`` bits, and the loop stops as soon as no state is
    live.

    :param glob: a valid glob (not checked here).
    """
    tokens = glob_tokens(glob)
    slash_step = 0  # step[c] for c == "/"
    other_step = 0  # step[c] for a character that no literal token names
    literal_step: dict[str, int] = {}
    loop_all = 0  # bits of ``**`` tokens
    loop_one = 0  # bits of ``*`` and ``**`` tokens
    runs_last = 0  # F: the last bit of each run of star bits
    runs_entry = 0  # I: the bit below the first bit of each run
    for j, token in enumerate(tokens):
        bit = 2 << j  # the state after token j
        if token == STARSTAR or token == STAR:
            loop_one |= bit
            if token == STARSTAR:
                loop_all |= bit
            if j == 0 or tokens[j - 1] not in (STAR, STARSTAR):
                runs_entry |= bit >> 1
            if j == len(tokens) - 1 or tokens[j + 1] not in (STAR, STARSTAR):
                runs_last |= bit
        elif token == ANY:
            other_step |= bit
        elif token == "/":
            slash_step |= bit
        else:
            literal_step[token] = literal_step.get(token, 0) | bit
    # ``?`` steps on every character but "/", literals on themselves only.
    table = {c: (bits | other_step, loop_one) for c, bits in literal_step.items()}
    table["/"] = (slash_step, loop_all)
    other = (other_step, loop_one)
    stars = loop_one
    accept = 1 << len(tokens)

    def close(d: int) -> int:
        e = d | runs_last
        return d | (stars & ~((e - runs_entry) ^ e))

    start = close(1)
    get = table.get

    def match(path: str) -> bool:
        d = start
        for c in path:
            step, loop = get(c, other)
            d = ((d << 1) & step) | (d & loop)
            if not d:
                return False
            e = d | runs_last
            d |= stars & ~((e - runs_entry) ^ e)
        return d & accept != 0

    return match
