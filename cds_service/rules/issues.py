"""Problems found in authored files (rules, rule tests, value sets), with their location.

Every problem prints as `path:line:col: field: message [rule-id]`, the form editors and CI
annotations understand. Loading collects every problem of every file instead of stopping at the
first, so one lint run shows an author everything to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cds_service.validation import error_message

__all__ = ["RuleIssue", "Severity", "author_message"]

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

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        field = f" {self.field}:" if self.field else ""
        rule = f" [{self.rule_id}]" if self.rule_id else ""
        level = "" if self.severity == "error" else " (warning)"
        return f"{where}:{field} {self.message}{rule}{level}"


def author_message(error: Mapping[str, Any]) -> str:
    """A pydantic validation error's message (`cds_service.validation.error_message`)."""
    return error_message(error)
