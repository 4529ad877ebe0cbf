"""A case's result and a run's report: messages, counts of failures and broken files."""

from __future__ import annotations

from pathlib import Path

from cds_service.issues import RuleIssue
from cds_service.rules.ruleset import RuleSet
from cds_service.rules.testing import CaseResult, TestReport


def test_a_broken_file_counts_as_one_failure_and_warnings_break_nothing(tmp_path: Path) -> None:
    broken, fine = tmp_path / "broken.yaml", tmp_path / "fine.yaml"
    ruleset = RuleSet(
        tmp_path,
        issues=[
            RuleIssue(broken, 3, 1, "card", "one", "broken"),
            RuleIssue(broken, 2, 1, "id", "two", "broken"),
            RuleIssue(fine, 1, 1, "", "just a warning", "fine", "warning"),
        ],
    )
    passed = CaseResult(fine, 4, "fine", "passes")
    failed = CaseResult(fine, 9, "fine", "fails", failures=["cards: expected 1 card, got 0"])
    report = TestReport(tmp_path, ruleset, [], [passed, failed])
    assert [i.message for i in report.issues] == ["two", "one", "just a warning"]
    assert report.broken_files == [broken]
    assert (report.passed, report.failed, report.ok) == (1, 2, False)
    assert failed.message() == (
        f"{fine}:9: case 'fails' of rule fine\n  cards: expected 1 card, got 0"
    )
    assert failed.key == "fine/fails" and passed.ok
