"""Problems found in authored files (rules, rule tests, value sets), with their location.

Every problem prints as `path:line:col: field: message [rule-id]`, the form editors and CI
annotations understand; one found by a lint validator adds the validator's id, `(validator-id)`,
by which `rules/lint.yaml` suppresses it. Loading collects every problem of every file instead of
stopping at the first, so one lint run shows an author everything to fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["RuleIssue", "Severity", "internal_error", "sorted_issues"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class RuleIssue:
    """One problem in one file."""

    path: Path
    line: int
    col: int
    field: str
    message: str
    rule_id: str | None = None
    severity: Severity = "error"
    validator: str | None = None  # the lint validator that reported it

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        field = f" {self.field}:" if self.field else ""
        rule = f" [{self.rule_id}]" if self.rule_id else ""
        by = f" ({self.validator})" if self.validator else ""
        level = "" if self.severity == "error" else " (warning)"
        return f"{where}:{field} {self.message}{rule}{by}{level}"


def sorted_issues(issues: Iterable[RuleIssue]) -> list[RuleIssue]:
    """Issues in reading order: by file, then position, then field and message."""
    return sorted(issues, key=lambda i: (str(i.path), i.line, i.col, i.field, i.message))


def internal_error(exc: BaseException) -> str:
    """The message of an issue standing for an exception raised while a file was checked: a bug
    of cds-service, reported where it happened like any other problem, never raised."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"internal error while checking this ({detail}); please report it"
