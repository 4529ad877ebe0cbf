"""fhir-model: element names, status codes and score fields a rule reads are checked against the
FHIR R4 model, so a misspelling that would make the rule silently never fire is an error at its
place. Each case edits a copy of a shipped rule; the shipped pack has none."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cds_service.config import default_rules_dir
from cds_service.rules.lint import lint_rules

HTN = Path("patient-view/hypertension-uncontrolled.yaml")
METFORMIN = Path("order-sign/metformin-egfr-below-30.yaml")


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """The shipped rules directory with the two rules edited here (and their tests)."""
    root = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), root)
    for path in root.glob("*/*.yaml"):
        if path.parent.name.startswith("_") or path.name.startswith("_"):
            continue
        if path.name.split(".")[0] not in (HTN.stem, METFORMIN.stem):
            path.unlink()
    return root


def _model_errors(root: Path) -> list[str]:
    report = lint_rules(root)
    return [
        f"{i.path.name}:{i.line}:{i.col}: {i.field}: {i.message}"
        for i in report.issues
        if i.validator == "fhir-model"
    ]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_the_shipped_rules_read_only_what_exists(rules: Path) -> None:
    assert _model_errors(rules) == []


def test_a_misspelt_element_after_a_selection_is_an_error(rules: Path) -> None:
    # %latest is %lastTwo.first(), %lastTwo a selection of Observations: an Observation.
    _edit(rules / HTN, "%latest.component.where", "%latest.componnent.where")
    [error] = _model_errors(rules)
    assert error.startswith("hypertension-uncontrolled.yaml:67:3: let.latestSbp: ")
    assert error.endswith(
        "%latest.componnent: Observation has no element 'componnent' (did you mean 'component'?)"
    )


def test_a_status_outside_the_binding_is_an_error(rules: Path) -> None:
    _edit(rules / HTN, "status: [final, amended, corrected]", "status: [final, amendd, corrected]")
    [error] = _model_errors(rules)
    assert "let.readings.status: 'amendd' is not a status of Observation" in error
    assert "(did you mean 'amended'?)" in error and "its codes: amended, cancelled" in error


def test_a_misspelt_score_field_is_an_error(rules: Path) -> None:
    _edit(rules / METFORMIN, "%scores.egfr.value.empty()", "%scores.egfr.valeu.empty()")
    [error] = _model_errors(rules)
    assert "%scores.egfr.valeu: a score has no field 'valeu' (did you mean 'value'?)" in error


def test_a_selections_where_reads_elements_of_its_types(rules: Path) -> None:
    _edit(rules / HTN, "      encounter.reference.empty()\n", "      encountr.reference.empty()\n")
    [error] = _model_errors(rules)
    assert "let.readings.where: encountr: Observation has no element 'encountr'" in error
    assert "(did you mean 'encounter'?)" in error
    # A choice element by its FHIRPath name or its typed name, and the type's name: fine.
    _edit(
        rules / HTN,
        "      encountr.reference.empty()\n",
        "      (effective.exists() and valueQuantity.empty() and Observation.id.exists())\n"
        "      and encounter.reference.empty()\n",
    )
    assert _model_errors(rules) == []


def test_a_number_or_date_compared_as_a_string_is_an_error(rules: Path) -> None:
    _edit(rules / HTN, '"%latestSbp >= 140 or', "\"%latestSbp >= '140' or")
    [error] = _model_errors(rules)
    assert "compares with the string '140': a number is written 140, unquoted" in error
    _edit(rules / HTN, "\"%latestSbp >= '140' or", "\"%latestSbp >= '140 mm[Hg]' or")
    [error] = _model_errors(rules)
    assert "a quantity is written 140 'mm[Hg]', unquoted" in error
    _edit(rules / HTN, "\"%latestSbp >= '140 mm[Hg]' or", "\"%now > '2020-01-01' or")
    [error] = _model_errors(rules)
    assert "compares with the string '2020-01-01': a date is written @2020-01-01" in error
