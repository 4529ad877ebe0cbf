"""Reading a test file: YAML and schema problems, located."""

from __future__ import annotations

from pathlib import Path

from cds_service.rules.testing import run_rule_tests
from tests.rules.conftest import SAMPLE_RULE
from tests.rules.testing.support import IBUPROFEN_CONTEXT, issue_lines, line_of, write_tests


def test_unknown_keys_are_reported_with_their_position(rules_dir: Path) -> None:
    path = write_tests(
        rules_dir,
        f"""\
  - name: typo
{IBUPROFEN_CONTEXT}
    expct: {{cards: []}}
""",
    )
    report = run_rule_tests(rules_dir)
    line = line_of(path, "expct:")
    assert issue_lines(report) == [
        f"{path}:{line}:5: cases[0].expct: is not a known key [{SAMPLE_RULE}]"
    ]
    assert report.results == []
    assert (report.passed, report.failed) == (0, 1)


def test_bad_yaml_and_duplicate_keys_are_reported(rules_dir: Path) -> None:
    path = write_tests(rules_dir, "  - name: [unclosed\n")
    [issue] = run_rule_tests(rules_dir).issues
    assert str(issue).startswith(f"{path}:5:1: YAML syntax error: ")
    assert "expected ',' or ']'" in issue.message
    assert "YAML syntax error" in issue.message
    path = write_tests(rules_dir, "  - name: a\n    name: b\n" + IBUPROFEN_CONTEXT)
    assert issue_lines(run_rule_tests(rules_dir)) == [
        f"{path}:5:5: cases[0].name: duplicate key 'name' (first at line 4) [{SAMPLE_RULE}]"
    ]


def test_missing_required_keys_are_reported(rules_dir: Path) -> None:
    path = rules_dir / "order-select" / f"{SAMPLE_RULE}.test.yaml"
    path.write_text("schema: cds-rule-test/2\ncases: []\n")
    assert issue_lines(run_rule_tests(rules_dir)) == [
        f"{path}:1:1: now: is required [{SAMPLE_RULE}]",
        f"{path}:1:1: schema: Input should be 'cds-rule-test/1' [{SAMPLE_RULE}]",
        f"{path}:2:1: cases: List should have at least 1 item after validation, not 0 "
        f"[{SAMPLE_RULE}]",
    ]
