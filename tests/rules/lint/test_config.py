"""rules/lint.yaml: validators switched off, rules excluded, and its own problems located."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.rules.cli import main
from cds_service.rules.lint import lint_rules, read_lint_config
from cds_service.rules.testing import run_rule_tests
from tests.rules.conftest import SAMPLE_RULE, minimal_rule


@pytest.fixture
def untested(rules_dir: Path) -> Path:
    """`rules_dir` plus two rules without tests (two rule-without-tests warnings)."""
    for rule_id in ("untested-a", "untested-b"):
        (rules_dir / "order-select" / f"{rule_id}.yaml").write_text(minimal_rule(rule_id))
    return rules_dir


def validators_of(root: Path) -> list[tuple[str | None, str | None]]:
    return [(i.rule_id, i.validator) for i in lint_rules(root).issues]


def test_without_lint_yaml_every_validator_runs(untested: Path) -> None:
    assert validators_of(untested) == [
        ("untested-a", "rule-without-tests"),
        ("untested-b", "rule-without-tests"),
    ]


def test_a_validator_switched_off(untested: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (untested / "lint.yaml").write_text("validators: [all, -rule-without-tests]\n")
    assert main(["rules", "lint", str(untested)]) == 0
    assert capsys.readouterr().out == "3 rules, 0 errors, 0 warnings\n"  # lint.yaml is no rule


def test_validators_apply_in_order(untested: Path) -> None:
    (untested / "lint.yaml").write_text("validators: [-all, rule-without-tests]\n")
    assert len(validators_of(untested)) == 2
    (untested / "lint.yaml").write_text("validators: []\n")
    assert validators_of(untested) == []


def test_a_rule_excluded_from_a_validator(untested: Path) -> None:
    (untested / "lint.yaml").write_text(
        "exclusions:\n  untested-a: [rule-without-tests]  # a reason, for reviewers\n"
    )
    assert validators_of(untested) == [("untested-b", "rule-without-tests")]


def test_unknown_ids_in_lint_yaml_are_located_errors(
    untested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = untested / "lint.yaml"
    path.write_text(
        "validators: [all, -rule-without-test]\n"
        "exclusions:\n"
        "  untested-c: [rule-without-tests]\n"
        "  untested-a: [missing-firing-case, rule-without-tests]\n"
        "  untested-b: [no-such-check]\n"
    )
    assert main(["rules", "lint", str(untested)]) == 1
    known = "fhir-model, missing-firing-case, missing-silent-case, rule-outside-hook-directory, "
    known += "rule-without-tests, test-code-outside-value-set, test-code-unknown"
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:1:19: validators[1]: unknown validator 'rule-without-test' (known: {known})",
        f"{path}:3:3: exclusions.untested-c: no rule 'untested-c' in this directory",
        f"{path}:5:16: exclusions.untested-b[0]: unknown validator 'no-such-check' "
        f"(known: {known})",
        f"{untested / 'order-select' / 'untested-b.yaml'}:1:1: no test file "
        "'untested-b.test.yaml' beside this rule [untested-b] (rule-without-tests) (warning)",
        "3 rules, 3 errors, 1 warnings",
    ]


def test_a_lint_yaml_that_fails_its_schema_leaves_every_validator_on(untested: Path) -> None:
    path = untested / "lint.yaml"
    path.write_text("validator: [-all]\nexclusions: {bad_id: [x]}\n")
    report = lint_rules(untested)
    assert [str(i) for i in report.errors] == [
        f"{path}:1:1: validator: is not a known key",
        f"{path}:2:14: exclusions.bad_id: String should match pattern '^[a-z0-9]+(?:-[a-z0-9]+)*$'",
    ]
    assert len(report.warnings) == 2


def test_yaml_errors_and_an_empty_file(untested: Path) -> None:
    path = untested / "lint.yaml"
    path.write_text("validators: [all\n")
    [error] = lint_rules(untested).errors
    assert str(error).startswith(f"{path}:2:1: YAML syntax error")
    path.write_text("# nothing switched off\n")
    config, issues = read_lint_config(untested, ["rule-without-tests"], ["untested-a"])
    assert config.enabled == frozenset({"rule-without-tests"})
    assert issues == []


def test_lint_yaml_is_neither_a_rule_nor_a_test_concern(untested: Path) -> None:
    (untested / "lint.yaml").write_text("validators: [all, -no-such-check]\n")
    report = run_rule_tests(untested)
    assert report.issues == [] and report.ok, [str(i) for i in report.issues]
    assert {r.rule_id for r in report.results} == {SAMPLE_RULE}
