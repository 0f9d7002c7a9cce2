"""What the fault suite's checkers return: a :class:`CheckResult` per check,
with a :class:`Verdict` (``ok`` / ``fail`` / ``unknown``) and one line per
problem, and a :class:`Report` of them all (:func:`tests.faults.checker.check_history`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable



class Verdict(str, enum.Enum):
    """The result of a check."""

    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"  # e.g. search budget exhausted

    @staticmethod
    def combine(verdicts: Iterable["Verdict"]) -> "Verdict":
        """FAIL if any failed, else UNKNOWN if any is unknown, else OK."""
        vs = set(verdicts)
        if Verdict.FAIL in vs:
            return Verdict.FAIL
        if Verdict.UNKNOWN in vs:
            return Verdict.UNKNOWN
        return Verdict.OK


@dataclass
class CheckResult:
    """What one checker found.

    :param name: which check.
    :param verdict: ok / fail / unknown.
    :param problems: one line per violation (or per reason for unknown).
    :param info: counters and extras (e.g. ``steps``, ``unverified``).
    """

    name: str
    verdict: Verdict = Verdict.OK
    problems: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True only for a definite pass."""
        return self.verdict is Verdict.OK

    def fail(self, problem: str) -> None:
        """Record a violation."""
        self.verdict = Verdict.FAIL
        self.problems.append(problem)

    def unknown(self, reason: str) -> None:
        """Record that the check could not decide (unless it already failed)."""
        if self.verdict is not Verdict.FAIL:
            self.verdict = Verdict.UNKNOWN
        self.problems.append(reason)

    def summary(self, limit: int = 20) -> str:
        """A few lines for a test failure message or a soak's output."""
        lines = [f"{self.name}: {self.verdict.value}"]
        lines += [f"  - {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


@dataclass
class Report:
    """The results of :func:`check_history`."""

    results: list[CheckResult]

    @property
    def verdict(self) -> Verdict:
        """The combined verdict."""
        return Verdict.combine(r.verdict for r in self.results)

    @property
    def ok(self) -> bool:
        """True only when every check passed definitely."""
        return self.verdict is Verdict.OK

    def summary(self, limit: int = 20) -> str:
        """Every check's summary."""
        return "\n".join(r.summary(limit) for r in self.results)
