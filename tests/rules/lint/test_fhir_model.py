"""fhir-model: element names, status codes and score fields a rule reads are checked against the
FHIR R4 model, so a misspelling that would make the rule silently never fire is an error at its
place. Each case edits a copy of a shipped rule; the shipped pack has none."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.rules.lint import lint_rules
from tests.rules.lint.support import edit, shipped_rules

HTN = Path("patient-view/hypertension-uncontrolled.yaml")
METFORMIN = Path("order-sign/metformin-egfr-below-30.yaml")


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """The shipped rules directory with the two rules edited here (and their tests)."""
    return shipped_rules(tmp_path, (HTN.stem, METFORMIN.stem))


def _model_errors(root: Path) -> list[str]:
    report = lint_rules(root)
    return [
        f"{i.path.name}:{i.line}:{i.col}: {i.field}: {i.message}"
        for i in report.issues
        if i.validator == "fhir-model"
    ]


def test_the_shipped_rules_read_only_what_exists(rules: Path) -> None:
    assert _model_errors(rules) == []


def test_a_misspelt_element_after_a_selection_is_an_error(rules: Path) -> None:
    # %latest is %lastTwo.first(), %lastTwo a selection of Observations: an Observation.
    edit(rules / HTN, "%latest.component.where", "%latest.componnent.where")
    [error] = _model_errors(rules)
    assert error.startswith("hypertension-uncontrolled.yaml:67:3: let.latestSbp: ")
    assert error.endswith(
        "%latest.componnent: Observation has no element 'componnent' (did you mean 'component'?)"
    )


def test_a_status_outside_the_binding_is_an_error(rules: Path) -> None:
    edit(rules / HTN, "status: [final, amended, corrected]", "status: [final, amendd, corrected]")
    [error] = _model_errors(rules)
    assert "let.readings.status: 'amendd' is not a status of Observation" in error
    assert "(did you mean 'amended'?)" in error and "its codes: amended, cancelled" in error


def test_a_misspelt_score_field_is_an_error(rules: Path) -> None:
    edit(rules / METFORMIN, "%scores.egfr.value.empty()", "%scores.egfr.valeu.empty()")
    [error] = _model_errors(rules)
    assert "%scores.egfr.valeu: a score has no field 'valeu' (did you mean 'value'?)" in error


def test_a_selections_where_reads_elements_of_its_types(rules: Path) -> None:
    edit(rules / HTN, "      encounter.reference.empty()\n", "      encountr.reference.empty()\n")
    [error] = _model_errors(rules)
    assert "let.readings.where: encountr: Observation has no element 'encountr'" in error
    assert "(did you mean 'encounter'?)" in error
    # A choice element by its FHIRPath name or its typed name, and the type's name: fine.
    edit(
        rules / HTN,
        "      encountr.reference.empty()\n",
        "      (effective.exists() and valueQuantity.empty() and Observation.id.exists())\n"
        "      and encounter.reference.empty()\n",
    )
    assert _model_errors(rules) == []


def test_a_number_or_date_compared_as_a_string_is_an_error(rules: Path) -> None:
    edit(rules / HTN, '"%latestSbp >= 140 or', "\"%latestSbp >= '140' or")
    [error] = _model_errors(rules)
    assert "compares with the string '140': a number is written 140, unquoted" in error
    edit(rules / HTN, "\"%latestSbp >= '140' or", "\"%latestSbp >= '140 mm[Hg]' or")
    [error] = _model_errors(rules)
    assert "a quantity is written 140 'mm[Hg]', unquoted" in error
    edit(rules / HTN, "\"%latestSbp >= '140 mm[Hg]' or", "\"%now > '2020-01-01' or")
    [error] = _model_errors(rules)
    assert "compares with the string '2020-01-01': a date is written @2020-01-01" in error


def test_a_misspelt_element_deeper_in_a_path_is_an_error(rules: Path) -> None:
    # The issue's `.vaule`: past `value.ofType(Quantity)`, in a selection's `where`.
    edit(
        rules / METFORMIN,
        'where: "value.ofType(Quantity).value.exists()"',
        'where: "value.ofType(Quantity).vaule.exists()"',
    )
    [error] = _model_errors(rules)
    assert error.endswith(
        "value.ofType(Quantity).vaule: Quantity has no element 'vaule' (did you mean 'value'?)"
    )


def test_a_path_is_followed_through_filters_and_backbone_elements(rules: Path) -> None:
    # %latest (an Observation) → component (ObservationComponent) → where(…) → value → Quantity.
    edit(rules / HTN, "exists()).value.ofType(Quantity).value.first()", "exists()).valeu.first()")
    [error] = _model_errors(rules)
    assert "%latest.component.where(…).valeu: ObservationComponent has no element 'valeu'" in error
    assert "(did you mean 'value'?)" in error


def test_oftype_must_name_a_type_the_element_holds(rules: Path) -> None:
    edit(rules / HTN, "%latest.effective.ofType(dateTime)", "%latest.effective.ofType(Quantity)")
    [error] = _model_errors(rules)
    assert (
        "%latest.effective.ofType(Quantity): %latest.effective holds Period, Timing, dateTime, "
        "instant, not 'Quantity'" in error
    )


def test_a_coding_path_is_checked(rules: Path) -> None:
    edit(
        rules / HTN,
        '"%hypertension.code.select(text | coding.display).first()"',
        '"%hypertension.code.codng.display.first()"',
    )
    [error] = _model_errors(rules)
    assert "%hypertension.code.codng: CodeableConcept has no element 'codng'" in error
    assert "(did you mean 'coding'?)" in error


def test_valid_deep_paths_pass(rules: Path) -> None:
    # Through a search's Bundle to any resource and back to a type, a choice narrowed by
    # ofType, an extension's value, a primitive's functions, and a reference's elements.
    expressions = [
        "%conditions.entry.resource.ofType(Condition).code.coding.code",
        "%conditions.entry.resource.ofType(Condition).onset.ofType(dateTime).toString()",
        "%latest.value.ofType(Quantity).unit",
        "%latest.value.ofType(CodeableConcept).coding.where(system = 'x').display",
        "%latest.subject.reference.startsWith('Patient/')",
        "%latest.extension.where(url = 'x').value.ofType(Coding).code",
        "%latest.referenceRange.low.value",
        "%latest.meta.lastUpdated",
    ]
    text = (rules / HTN).read_text()
    anchor = '  htnName: "%hypertension.code.select(text | coding.display).first()"\n'
    assert anchor in text
    added = "".join(f'  deep{i}: "{e}"\n' for i, e in enumerate(expressions))
    (rules / HTN).write_text(text.replace(anchor, anchor + added, 1))
    assert _model_errors(rules) == []
