"""A broken rule file is an error at its `file:line:col`, never an exception (issue 20).

`rules lint` and `rules test` once stopped with a bare AssertionError on a FHIRPath syntax error
under `let:`. The whole class is held here: YAML that PyYAML cannot build into values (tags,
impossible dates, an alias inside itself, nesting past any authored file), and an exception
anywhere while a file is checked (a bug of ours), which is reported at the value being checked,
or at the file, and leaves the rule out. Mutants of every shipped rule: test_loader_fuzz.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from cds_service.issues import RuleIssue
from cds_service.rules import compiled, ruleset
from cds_service.rules.cli import main
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.lint import lint_rules
from cds_service.rules.lint.base import Validator
from cds_service.rules.ruleset import load_ruleset
from cds_service.rules.testing import plan
from tests.rules.conftest import SAMPLE_RULE, minimal_rule

LET = 'medicationCount: "%activeMedications.entry.count()"'  # line 13 of the minimal rule


def write_probe(root: Path, old: str = "", new: str = "") -> Path:
    """The minimal rule as `probe.yaml`, `old` replaced by `new`."""
    text = minimal_rule("probe")
    assert old in text
    path = root / "order-select" / "probe.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def located(issues: Iterable[RuleIssue]) -> list[tuple[int, int, str, str]]:
    return [(i.line, i.col, i.field, i.message) for i in issues]


def boom(*args: Any, **kwargs: Any) -> NoReturn:
    raise AssertionError


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "medicationCount: ",
            "medicationCount: !foo ",
            (13, 20, "let.medicationCount", "could not determine a constructor for the tag '!foo'"),
        ),
        (
            "version: 1",
            "version: 2026-02-30",
            (3, 10, "version", "not a valid !!timestamp (day is out of range for month)"),
        ),
        ("version: 1", "version: !!int one", (3, 10, "version", "not a valid !!int")),
        ("version: 1", "version: !!timestamp soon", (3, 10, "version", "not a valid !!timestamp")),
        (
            "references: [https://example.org/reference]",
            "references: &refs [*refs]",
            (9, 13, "references[0]", "an alias (*name) inside the value its anchor"),
        ),
        (
            LET,
            "medicationCount: " + "[" * 150 + "]" * 150,
            (13, 118, "let.medicationCount" + "[0]" * 98, "nested deeper than 100 levels"),
        ),
        # The issue's own examples, FHIRPath errors under `let:` (a binding's key is its place).
        (
            "entry.count()",
            "entry.count().toString().substring(0, 10",
            (13, 3, "let.medicationCount", "FHIRPath syntax error: no viable alternative"),
        ),
        (
            "%activeMedications.entry.count()",
            "%activeMedications.frist()",
            (13, 3, "let.medicationCount", "unknown function frist()"),
        ),
    ],
    ids=[
        "unknown-tag",
        "impossible-date",
        "int-tag",
        "timestamp-tag",
        "alias-inside-itself",
        "deep-nesting",
        "unclosed-call",
        "unknown-function",
    ],
)
def test_a_broken_value_is_one_located_error_for_the_loader_lint_and_test(
    empty_rules: Path,
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    expected: tuple[int, int, str, str],
) -> None:
    path = write_probe(empty_rules, old, new)
    loaded = load_ruleset(empty_rules, [])
    [(line, col, field, message)] = located(loaded.issues)
    assert (line, col, field) == expected[:3]
    assert expected[3] in message
    assert "probe" not in loaded.rules
    assert located(lint_rules(empty_rules).errors) == located(loaded.issues)
    assert main(["rules", "lint", str(empty_rules)]) == 1
    assert f"{path}:{line}:{col}: {field}: " in capsys.readouterr().out
    assert main(["rules", "test", str(empty_rules)]) == 1
    assert f"{path}:{line}:{col}: {field}: " in capsys.readouterr().out


def test_an_exception_checking_an_expression_is_an_error_at_the_expression(
    empty_rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_probe(empty_rules)
    monkeypatch.setattr(compiled, "unsupported_constructs", boom)
    loaded = load_ruleset(empty_rules, [])
    message = "internal error while checking this (AssertionError); please report it"
    assert located(loaded.issues) == [
        (13, 3, "let.medicationCount", message),
        (17, 7, "when.all[0].fhirpath", message),
    ]
    assert loaded.rules == {}


def test_an_exception_building_a_binding_is_an_error_at_the_binding(
    empty_rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What issue 20 saw: CompiledBinding's own check failing (`assert self.select is not None`).
    write_probe(empty_rules)
    monkeypatch.setattr(compiled, "CompiledBinding", boom)
    [issue] = load_ruleset(empty_rules, []).issues
    assert (issue.line, issue.col, issue.field, issue.rule_id) == (
        13,
        3,
        "let.medicationCount",
        "probe",
    )
    assert issue.message.startswith("internal error while checking this (AssertionError)")


def test_an_exception_loading_a_file_is_that_files_error_and_the_others_load(
    empty_rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_probe(empty_rules)
    (empty_rules / "order-select" / "second.yaml").write_text(minimal_rule("second"))
    real = compiled.compile_rule

    def failing_for_probe(rule: Any, path: Path, *args: Any, **kwargs: Any) -> Any:
        if path.stem == "probe":
            raise KeyError("text")
        return real(rule, path, *args, **kwargs)

    monkeypatch.setattr(ruleset, "compile_rule", failing_for_probe)
    loaded = load_ruleset(empty_rules, [])
    message = "internal error while checking this (KeyError: 'text'); please report it"
    assert [(i.path.name, i.line, i.col, i.message) for i in loaded.issues] == [
        ("probe.yaml", 1, 1, message)
    ]
    assert list(loaded.rules) == ["second"]


def test_an_exception_planning_a_test_file_is_that_files_error(
    rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan._Planner, "run", boom)
    [issue] = lint_rules(rules_dir).errors
    assert (issue.path.name, issue.line, issue.col, issue.rule_id) == (
        f"{SAMPLE_RULE}.test.yaml",
        1,
        1,
        SAMPLE_RULE,
    )
    assert issue.message.startswith("internal error while checking this (AssertionError)")


class Failing(Validator):
    id = "failing"
    description = "Raises on every rule, as a validator with a bug would."

    def validate(self, rule: CompiledRule) -> Iterable[RuleIssue]:
        raise AssertionError


def test_an_exception_in_a_validator_is_an_error_naming_it(rules_dir: Path) -> None:
    report = lint_rules(rules_dir, validators=[Failing])
    assert [(i.path.name, i.line, i.col, i.validator) for i in report.errors] == [
        (f"{SAMPLE_RULE}.yaml", 1, 1, "failing")
    ]
    assert SAMPLE_RULE in report.ruleset.rules
