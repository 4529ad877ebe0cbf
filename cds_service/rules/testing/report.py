"""What a run of rule tests produced: one result per case, and the run's report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cds_service.issues import RuleIssue, sorted_issues
from cds_service.rules.ruleset import RuleSet
from cds_service.rules.testing.matching import cards_diff
from cds_service.rules.testing.plan import TestFilePlan

__all__ = ["CaseResult", "RuleTestFailure", "TestReport"]


class RuleTestFailure(AssertionError):
    """Raised by the pytest plugin for a failing case; the message says everything."""


@dataclass(slots=True)
class CaseResult:
    """What happened to one case."""

    path: Path
    line: int
    rule_id: str
    name: str
    failures: list[str] = field(default_factory=list)
    status: str | None = None
    reason: str | None = None
    expected_cards: list[dict[str, Any]] = field(default_factory=list)
    actual_cards: list[dict[str, Any]] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def key(self) -> str:
        return f"{self.rule_id}/{self.name}"

    def message(self, *, diff: bool = False) -> str:
        """Where the case is, and every mismatch (with the card diff when asked)."""
        lines = [f"{self.path}:{self.line}: case '{self.name}' of rule {self.rule_id}"]
        lines += [f"  {failure}" for failure in self.failures]
        if diff:
            text = self.diff()
            if text:
                lines += ["", text]
        return "\n".join(lines)

    def diff(self) -> str:
        """Unified diff of the expected cards against the actual ones (keys the expectation
        does not mention are left out of the actual side; extra cards are shown whole)."""
        return cards_diff(self.expected_cards, self.actual_cards)


@dataclass(slots=True)
class TestReport:
    """The result of `rules test`: load problems and one result per case run."""

    __test__: ClassVar[bool] = False

    root: Path
    ruleset: RuleSet
    plans: list[TestFilePlan]
    results: list[CaseResult]

    @property
    def issues(self) -> list[RuleIssue]:
        return sorted_issues([*self.ruleset.issues, *(i for p in self.plans for i in p.issues)])

    @property
    def errors(self) -> list[RuleIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def broken_files(self) -> list[Path]:
        """Files (rules, value sets, tests) whose errors keep them from loading or running."""
        return sorted({i.path for i in self.errors}, key=str)

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        """Failing cases, plus one per broken file (as the pytest plugin counts them)."""
        return sum(1 for r in self.results if not r.ok) + len(self.broken_files)

    @property
    def ok(self) -> bool:
        return self.failed == 0
