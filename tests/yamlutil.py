"""A reader for the YAML the deployment files use (tests/test_deploy.py).

PyYAML is not a dependency, and the Kubernetes example needs only a small
part of YAML: ``---`` between documents, block mappings and sequences
(a sequence item may open a mapping), ``|`` literal blocks, JSON-style flow
sequences, quoted and plain scalars, and ``#`` comments. Anything else is
refused with its line number, so the example stays in this subset (and
:func:`load_all` agrees with PyYAML where that is installed).
"""

from __future__ import annotations

import json
import re
from typing import Any

_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")


class YAMLSubsetError(ValueError):
    """The text leaves the subset this reader knows."""


def load_all(text: str) -> list[Any]:
    """The documents of ``text``."""
    docs: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.rstrip() == "---":
            docs.append([])
        else:
            docs[-1].append(line)
    out = []
    for lines in docs:
        reader = _Reader(lines)
        if reader.next_line() is not None:
            out.append(reader.document())
    return out


def _strip_comment(text: str) -> str:
    """``text`` without a trailing `` # comment`` (outside quotes)."""
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def scalar(text: str, lineno: int = 0) -> Any:
    """One scalar (or a JSON-style flow sequence)."""
    if text.startswith(("[", '"')):
        try:
            return json.loads(text)
        except ValueError:
            raise YAMLSubsetError(f"line {lineno}: not JSON-style: {text!r}") from None
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise YAMLSubsetError(f"line {lineno}: unterminated {text!r}")
        return text[1:-1].replace("''", "'")
    if text.startswith(("{", "&", "*", "!", "%", "@", "`", ">")):
        raise YAMLSubsetError(f"line {lineno}: {text[0]!r} is outside the subset")
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~", ""):
        return None
    if _INT.fullmatch(text):
        return int(text)
    if re.fullmatch(r"0[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", text):
        raise YAMLSubsetError(f"line {lineno}: {text!r} reads differently in YAML 1.1 and 1.2")
    return text


class _Reader:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.i = 0

    def next_line(self) -> Any:
        """(indent, text) of the next line with content, skipping blanks and comments."""
        while self.i < len(self.lines):
            raw = self.lines[self.i]
            if "\t" in raw[: len(raw) - len(raw.lstrip())]:
                raise YAMLSubsetError(f"line {self.i + 1}: a tab in the indentation")
            text = _strip_comment(raw.strip())
            if text:
                return len(raw) - len(raw.lstrip(" ")), text
            self.i += 1
        return None

    def document(self) -> Any:
        indent, _ = self.next_line()
        value = self.block(indent)
        if self.next_line() is not None:
            raise YAMLSubsetError(f"line {self.i + 1}: unexpected indentation")
        return value

    def block(self, indent: int) -> Any:
        _, text = self.next_line()
        if text == "-" or text.startswith("- "):
            return self.sequence(indent)
        return self.mapping(indent, None)

    def sequence(self, indent: int) -> list[Any]:
        items: list[Any] = []
        while (line := self.next_line()) is not None and line[0] == indent:
            text = line[1]
            if not (text == "-" or text.startswith("- ")):
                break
            rest = text[1:].strip()
            if not rest:
                self.i += 1
                inner = self.next_line()
                if inner is None or inner[0] <= indent:
                    items.append(None)
                else:
                    items.append(self.block(inner[0]))
            elif rest == "|":
                self.i += 1
                items.append(self.literal(indent))
            elif _key_of(rest) is not None:
                items.append(self.mapping(indent + 2, rest))
            else:
                items.append(scalar(rest, self.i + 1))
                self.i += 1
        return items

    def mapping(self, indent: int, first: Any) -> dict[str, Any]:
        """A mapping at ``indent``; ``first`` is its first line's text when
        that line is a sequence item's (``- key: value``)."""
        out: dict[str, Any] = {}
        while True:
            if first is not None:
                text, first = first, None
            else:
                line = self.next_line()
                if line is None or line[0] != indent:
                    if line is not None and line[0] > indent:
                        raise YAMLSubsetError(f"line {self.i + 1}: unexpected indentation")
                    return out
                text = line[1]
                if text == "-" or text.startswith("- "):
                    return out
            lineno = self.i + 1
            parsed = _key_of(text)
            if parsed is None:
                raise YAMLSubsetError(f"line {lineno}: expected 'key: value', got {text!r}")
            key, rest = parsed
            if key in out:
                raise YAMLSubsetError(f"line {lineno}: key {key!r} twice")
            self.i += 1
            if rest == "|":
                out[key] = self.literal(indent)
            elif rest:
                out[key] = scalar(rest, lineno)
            else:
                inner = self.next_line()
                if inner is not None and (inner[0] > indent or (
                        inner[0] == indent and (inner[1] == "-" or inner[1].startswith("- ")))):
                    out[key] = self.block(inner[0])
                else:
                    out[key] = None

    def literal(self, indent: int) -> str:
        """A ``|`` block: the lines indented deeper than its key, kept as they are."""
        body: list[str] = []
        block_indent = None
        while self.i < len(self.lines):
            raw = self.lines[self.i]
            if raw.strip():
                here = len(raw) - len(raw.lstrip(" "))
                if here <= indent:
                    break
                if block_indent is None:
                    block_indent = here
                if here < block_indent:
                    raise YAMLSubsetError(f"line {self.i + 1}: less indented than its block")
                body.append(raw[block_indent:])
            else:
                body.append("")
            self.i += 1
        while body and not body[-1]:
            body.pop()
        return "\n".join(body) + "\n" if body else ""


def _key_of(text: str) -> Any:
    """``(key, rest)`` of a ``key: value`` line, or None."""
    match = re.match(r"([A-Za-z0-9_.\-/]+):(?:\s+(.*))?$", text)
    if match is None:
        return None
    return match.group(1), (match.group(2) or "").strip()
