"""rule-without-tests, missing-firing-case, missing-silent-case."""

from __future__ import annotations

from pathlib import Path

from cds_service.rules.lint import lint_rules
from cds_service.rules.testing import run_rule_tests
from tests.rules.conftest import SAMPLE_RULE, minimal_rule
from tests.rules.testing.support import IBUPROFEN_CONTEXT, line_of, write_tests


def warnings(root: Path) -> list[str]:
    report = lint_rules(root)
    assert not report.errors, [str(i) for i in report.errors]
    return [str(i) for i in report.warnings]


def test_a_rule_without_a_test_file_is_reported_unless_retired(empty_rules: Path) -> None:
    path = empty_rules / "order-select" / "untested.yaml"
    path.write_text(minimal_rule("untested"))
    assert warnings(empty_rules) == [
        f"{path}:1:1: no test file 'untested.test.yaml' beside this rule [untested] "
        "(rule-without-tests) (warning)"
    ]
    path.write_text(minimal_rule("untested").replace("status: active", "status: retired"))
    assert warnings(empty_rules) == []


def test_tests_that_never_expect_a_card_are_reported(rules_dir: Path) -> None:
    path = write_tests(rules_dir, f"  - name: quiet\n{IBUPROFEN_CONTEXT}")
    line = line_of(path, "cases:")
    assert warnings(rules_dir) == [
        f"{path}:{line}:1: cases: no case expects a card: add one where the rule fires "
        f"[{SAMPLE_RULE}] (missing-firing-case) (warning)"
    ]


def test_tests_that_never_expect_silence_are_reported(rules_dir: Path) -> None:
    # A case expecting no card because the rule was skipped does not show it staying silent.
    path = write_tests(
        rules_dir,
        f"""\
  - name: fires
{IBUPROFEN_CONTEXT}
    expect: {{cards: [{{indicator: warning}}]}}
  - name: skipped
{IBUPROFEN_CONTEXT}
    expect: {{status: skipped}}
""",
    )
    line = line_of(path, "cases:")
    assert warnings(rules_dir) == [
        f"{path}:{line}:1: cases: no case expects silence: add one where the rule must not "
        f"fire [{SAMPLE_RULE}] (missing-silent-case) (warning)"
    ]


def test_a_test_file_with_errors_is_not_judged_on_coverage(rules_dir: Path) -> None:
    write_tests(rules_dir, "  - name: typo\n    contxt: {}\n")
    report = lint_rules(rules_dir)
    assert report.warnings == []
    assert [i.field for i in report.errors] == ["cases[0].contxt"]


def test_coverage_is_a_lint_question_not_a_rule_test_problem(rules_dir: Path) -> None:
    write_tests(rules_dir, f"  - name: quiet\n{IBUPROFEN_CONTEXT}")
    assert run_rule_tests(rules_dir).issues == []
