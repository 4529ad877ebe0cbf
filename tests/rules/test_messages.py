"""Lint messages a new rule author can act on: one error per mistake, "did you mean" for a
misspelt key, value set or function, and the likely cause of a YAML flow-mapping error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cds_service.config import default_rules_dir
from cds_service.rules.lint import lint_rules

RULE = Path("patient-view/hypertension-uncontrolled.yaml")
TESTS = Path("patient-view/hypertension-uncontrolled.test.yaml")


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), root)
    return root


def _errors(root: Path) -> list[str]:
    report = lint_rules(root)
    issues = [*report.ruleset.issues, *report.issues]  # the ruleset's are among the report's
    found = [f"{i.line}:{i.col}: {i.field}: {i.message}" for i in issues if i.severity == "error"]
    return list(dict.fromkeys(found))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_a_misspelt_key_is_one_error_that_says_which_was_meant(rules: Path) -> None:
    _edit(rules / RULE, "fhirpath:", "fhirPath:")
    [error] = _errors(rules)  # it was 7: the condition union's members, each asking for its keys
    assert error.endswith(".fhirPath: is not a known key (did you mean 'fhirpath'?)")


def test_a_misspelt_value_set_or_function_says_which_was_meant(rules: Path) -> None:
    text = (rules / RULE).read_text()
    coded = next(line for line in text.splitlines() if "coded:" in line)
    value_set = coded.split("coded:")[1].strip()
    _edit(rules / RULE, coded, coded.replace(value_set, value_set[:-1] + value_set[-1] * 2))
    [error] = _errors(rules)
    assert (
        f"(did you mean '{value_set}'?)" in error
        and error.startswith(f"{coded.find('coded') + 1}:") is False
    )
    shutil.copy(default_rules_dir() / RULE, rules / RULE)
    _edit(rules / RULE, ".exists()", ".exist()")
    [error] = _errors(rules)
    assert "unknown function exist() (did you mean exists()?)" in error
    shutil.copy(default_rules_dir() / RULE, rules / RULE)
    _edit(rules / RULE, coded, coded.replace(value_set, "zzz-nothing-like-it"))
    [error] = _errors(rules)
    assert "unknown value set 'zzz-nothing-like-it' (known: " in error
    assert "add it under rules/_valuesets/" in error and "urn:" not in error


def test_an_unquoted_unit_in_a_flow_mapping_names_the_cause(rules: Path) -> None:
    _edit(rules / TESTS, 'unit: "mm[Hg]"', "unit: mm[Hg]")
    [error] = _errors(rules)
    assert "YAML syntax error: did not find expected ',' or '}'" in error
    assert 'quote `mm[Hg]` ("mm[Hg]")' in error
