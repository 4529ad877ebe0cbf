"""Draft rules: a rule (and its tests) typed in the playground, checked apart from the served rules.

A draft is written to a temporary rules directory that shares the served directory's services,
value sets and terminology (symbolic links, read only) and holds nothing else: the draft rule at
`<hook>/<id>.yaml` and, when given, its tests at `<hook>/<id>.test.yaml`. Everything the command
line does then works on it unchanged: `rules lint` (load errors and validators, each at its
line:col), `rules test`, `rules explain` and `rules simulate`. The served directory is never
written: a draft cannot reach the rules the service answers EHRs with.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from cds_service.issues import RuleIssue
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.lint.run import lint_rules
from cds_service.rules.ruleset import RuleSet
from cds_service.rules.testing.report import CaseResult
from cds_service.rules.testing.runner import run_rule_tests

__all__ = [
    "DRAFT_SHARED",
    "MAX_RULE_CHARS",
    "MAX_TESTS_CHARS",
    "DraftCheck",
    "DraftDir",
    "DraftIssue",
    "check_draft",
    "draft_directory",
    "run_draft_tests",
    "tests_json",
]

#: What a draft directory shares with the served rules directory.
DRAFT_SHARED = ("_services.yaml", "_valuesets", "_terminology", "_fixtures")
MAX_RULE_CHARS = 200_000
MAX_TESTS_CHARS = 2_000_000
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")

DraftFile = Literal["rule", "tests", "rules"]


@dataclass(frozen=True, slots=True)
class DraftIssue:
    """One problem of a draft, where the author typed it: `file` is `rule` or `tests` (or
    `rules` for a problem of the shared files, never expected)."""

    file: DraftFile
    line: int
    col: int
    field: str
    message: str
    severity: str
    validator: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
            "validator": self.validator,
        }


@dataclass(frozen=True, slots=True)
class DraftDir:
    """A temporary rules directory holding one draft."""

    root: Path
    rule_path: Path
    tests_path: Path | None
    hook: str
    rule_id: str

    def issue(self, issue: RuleIssue) -> DraftIssue:
        path = issue.path.resolve() if issue.path.is_absolute() else self.root / issue.path
        file: DraftFile = "rules"
        if path == self.rule_path.resolve():
            file = "rule"
        elif self.tests_path is not None and path == self.tests_path.resolve():
            file = "tests"
        return DraftIssue(
            file,
            issue.line,
            issue.col,
            issue.field,
            issue.message,
            issue.severity,
            issue.validator,
        )


def _named(text: str) -> tuple[str, str]:
    """The draft's hook and id when the YAML says them plainly; placeholders otherwise (the
    loader then reports what is wrong)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return "draft", "draft"
    if not isinstance(value, dict):
        return "draft", "draft"
    hook, rule_id = value.get("hook"), value.get("id")
    hook = hook if isinstance(hook, str) and _NAME.match(hook) else "draft"
    rule_id = rule_id if isinstance(rule_id, str) and _NAME.match(rule_id) else "draft"
    return hook, rule_id


@contextlib.contextmanager
def draft_directory(
    served: Path, rule_text: str, tests_text: str | None = None
) -> Iterator[DraftDir]:
    """A temporary rules directory with the draft, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="cds-draft-") as scratch:
        root = Path(scratch)
        for name in DRAFT_SHARED:
            if (served / name).exists():
                (root / name).symlink_to((served / name).resolve())
        hook, rule_id = _named(rule_text)
        (root / hook).mkdir()
        rule_path = root / hook / f"{rule_id}.yaml"
        rule_path.write_text(rule_text, encoding="utf-8")
        tests_path = None
        if tests_text is not None and tests_text.strip():
            tests_path = root / hook / f"{rule_id}.test.yaml"
            tests_path.write_text(tests_text, encoding="utf-8")
        yield DraftDir(root, rule_path, tests_path, hook, rule_id)


@dataclass(frozen=True, slots=True)
class DraftCheck:
    """The draft linted: its issues, and the rule when it loads."""

    issues: list[DraftIssue]
    rule: CompiledRule | None
    ruleset: RuleSet

    @property
    def errors(self) -> list[DraftIssue]:
        return [i for i in self.issues if i.severity == "error"]


def check_draft(draft: DraftDir) -> DraftCheck:
    """`rules lint` over the draft directory."""
    report = lint_rules(draft.root)
    issues = [draft.issue(i) for i in report.issues]
    rules = list(report.ruleset.rules.values())
    return DraftCheck(issues, rules[0] if len(rules) == 1 else None, report.ruleset)


def tests_json(results: Sequence[CaseResult], problems: list[dict[str, Any]]) -> dict[str, Any]:
    """Test results as the workbench shows them: each case's outcome and mismatches."""
    cases = [
        {
            "name": result.name,
            "line": result.line,
            "ok": result.ok,
            "status": result.status,
            "reason": result.reason,
            "failures": result.failures,
            "diff": result.diff() if not result.ok else "",
        }
        for result in results
    ]
    return {
        "cases": cases,
        "passed": sum(1 for c in cases if c["ok"]),
        "failed": sum(1 for c in cases if not c["ok"]),
        "problems": problems,
    }


def run_draft_tests(draft: DraftDir) -> dict[str, Any]:
    """`rules test` over the draft directory, as JSON."""
    report = run_rule_tests(draft.root)
    return tests_json(
        report.results, [draft.issue(i).to_json() for plan in report.plans for i in plan.issues]
    )
