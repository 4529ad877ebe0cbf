"""Codes in rule tests are the codes the rule selects (issue 20, point 4): a test's coding that
names a member of the value set a `coded:` selection reads, under a code outside the set, is an
error at its place; a code no value set knows and nobody named is a warning. Each case edits a
copy of shipped rules and their tests; the shipped pack has neither, and its deliberate
non-members (a topical NSAID, a heparin lock flush, a local formulary code) pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service.config import default_rules_dir
from cds_service.rules.lint import lint_rules
from tests.rules.lint.support import edit, shipped_rules

DOAC = Path("order-sign/doac-renal-dosing.test.yaml")
METFORMIN = Path("order-sign/metformin-egfr-below-30.test.yaml")
NSAID = Path("order-select/nsaid-with-anticoagulant.test.yaml")
VALIDATORS = ("test-code-outside-value-set", "test-code-unknown")
KEPT = ("doac-renal-dosing", "metformin-egfr-below-30", "nsaid-with-anticoagulant")


@pytest.fixture(scope="module")
def shipped() -> Path:
    return default_rules_dir()


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """The shipped rules directory with only the rules edited here (and their tests)."""
    return shipped_rules(tmp_path, KEPT)


def _found(root: Path) -> list[str]:
    return [
        f"{i.path.name}:{i.line}:{i.col}: {i.severity}: {i.field}: {i.message} ({i.validator})"
        for i in lint_rules(root).issues
        if i.validator in VALIDATORS
    ]


def test_the_shipped_tests_use_the_codes_their_rules_select(shipped: Path) -> None:
    assert _found(shipped) == []
    # Among them, deliberate non-members that must stay allowed: a topical NSAID (the map knows
    # it; the systemic set leaves it out) and a local formulary code with a member's name.
    nsaid = (shipped / NSAID).read_text()
    assert '"855633", display: Diclofenac Sodium 0.01 MG/MG Topical Gel' in nsaid
    statin = (shipped / "patient-view/statin-secondary-prevention.test.yaml").read_text()
    assert 'code: "CRE40"' in statin


def test_a_members_name_under_another_code_is_an_error(rules: Path) -> None:
    # The fixture order's RxNorm code, one digit off; its display is the set's member 1232088.
    edit(rules / DOAC, "code: '1232088', display:", "code: '1232089', display:")
    [error] = _found(rules)
    assert error.startswith(
        "doac-renal-dosing.test.yaml:41:71: error: cases[0].context.draftOrders.entry[0]"
        ".resource.medicationCodeableConcept.coding[0].code: RxNorm 1232089 "
        "'rivaroxaban 20 MG Oral Tablet [Xarelto]' is not in value set "
        "'direct-oral-anticoagulants', which lists that name as 1232088: `doacOrder` "
        "(coded: direct-oral-anticoagulants) never selects this MedicationRequest."
    )
    assert error.endswith(
        "Use the set's code, or add this code to the value set if prescribers order it "
        "(test-code-outside-value-set)"
    )


def test_names_are_compared_as_an_ehr_writes_them(rules: Path) -> None:
    # Case and spacing differ from the value set's display; the code is not the set's.
    edit(
        rules / DOAC,
        "code: '1232088', display: 'rivaroxaban 20\n                MG Oral Tablet [Xarelto]'}",
        "code: '999999', display: 'RIVAROXABAN  20 mg oral tablet [xarelto]'}",
    )
    [error] = _found(rules)
    assert "RxNorm 999999 'RIVAROXABAN  20 mg oral tablet [xarelto]' is not in value set" in error


def test_an_rxnorm_code_naming_an_ingredient_of_the_set_is_an_error(rules: Path) -> None:
    # A made-up code and strength: no member has this name, but it names rivaroxaban.
    edit(
        rules / DOAC,
        "code: '1232088', display: 'rivaroxaban 20\n                MG Oral Tablet [Xarelto]'}",
        "code: '1232000', display: 'rivaroxaban 25 MG Oral Tablet'}",
    )
    edit(
        rules / DOAC,
        "text: rivaroxaban 20 MG Oral Tablet [Xarelto]",
        "text: rivaroxaban 25 MG Oral Tablet",
    )
    [error] = _found(rules)
    assert (
        "RxNorm 1232000 'rivaroxaban 25 MG Oral Tablet' names rivaroxaban, an ingredient of "
        "value set 'direct-oral-anticoagulants', but is not in the set (the set's closest "
        "member: " in error
    )
    assert "'rivaroxaban 20 MG Oral Tablet" in error or "'rivaroxaban 2.5 MG" in error


def test_a_local_code_is_outside_the_set_by_design(rules: Path) -> None:
    # A formulary's own code with the member's name: the rule cannot see it, and a case may
    # show exactly that.
    edit(
        rules / DOAC,
        "{system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '1232088',",
        "{system: 'urn:oid:2.16.840.1.113883.3.9999.1', code: 'XAR20',",
    )
    assert _found(rules) == []


def test_another_drug_is_a_legitimate_non_member(rules: Path) -> None:
    # A real drug of no ingredient of the set (a negative case's "other drug").
    edit(
        rules / DOAC,
        "code: '1232088', display: 'rivaroxaban 20\n                MG Oral Tablet [Xarelto]'}",
        "code: '308460', display: azithromycin 250 MG Oral Tablet}",
    )
    edit(
        rules / DOAC,
        "text: rivaroxaban 20 MG Oral Tablet [Xarelto]",
        "text: azithromycin 250 MG Oral Tablet",
    )
    assert _found(rules) == []


def test_a_condition_code_is_checked_like_a_drug(rules: Path) -> None:
    # SNOMED atrial fibrillation, one digit off, with the set's display for 49436004.
    edit(
        rules / DOAC,
        "code: '49436004', display: Atrial fibrillation}",
        "code: '49436005', display: Atrial fibrillation}",
    )
    [error] = _found(rules)
    assert (
        "SNOMED CT 49436005 'Atrial fibrillation' is not in value set 'atrial-fibrillation', "
        "which lists that name as 49436004: `" in error
    )
    assert "never selects this Condition." in error


def test_an_unnamed_code_no_value_set_holds_is_a_warning(rules: Path) -> None:
    # Creatinine's LOINC 2160-0 mistyped, with no display to tell what was meant.
    edit(
        rules / METFORMIN,
        'code: {coding: [{system: "http://loinc.org", code: "2160-0"}]}',
        'code: {coding: [{system: "http://loinc.org", code: "2160-1"}]}',
    )
    [warning] = _found(rules)
    assert "metformin-egfr-below-30.test.yaml:167:" in warning
    assert ": warning: " in warning
    assert (
        "LOINC 2160-1 is in no value set of this rules directory and has no display or text to "
        "say what it is: `" in warning
    )
    assert "If it is a typo, the case passes for the wrong reason" in warning
    assert warning.endswith("(test-code-unknown)")


def test_a_named_unknown_code_is_no_warning(rules: Path) -> None:
    # The same code with a display: a reviewer can see what it is (a lab the rule ignores).
    edit(
        rules / METFORMIN,
        'code: {coding: [{system: "http://loinc.org", code: "2160-0"}]}',
        'code: {coding: [{system: "http://loinc.org", code: "2345-7", display: Glucose}]}',
    )
    assert _found(rules) == []


def test_a_fixture_file_is_reported_at_its_name(rules: Path) -> None:
    # The order comes from a context file: the problem names the file and the place inside it.
    fixtures = rules / "_fixtures"
    fixtures.mkdir(exist_ok=True)
    context = {
        "userId": "Practitioner/prac-1",
        "patientId": "pat-1",
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "id": "mr-riva",
                        "status": "draft",
                        "intent": "order",
                        "subject": {"reference": "Patient/pat-1"},
                        "medicationCodeableConcept": {
                            "coding": [
                                {
                                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                    "code": "1232089",
                                    "display": "rivaroxaban 20 MG Oral Tablet [Xarelto]",
                                }
                            ]
                        },
                    }
                }
            ],
        },
    }
    (fixtures / "riva-order.json").write_text(json.dumps(context))
    edit(
        rules / DOAC,
        "  context: *signRiva1232088\n",
        "  context_file: _fixtures/riva-order.json\n",
    )
    [error] = _found(rules)
    assert (
        ": error: cases[0].context_file: in '_fixtures/riva-order.json' at draftOrders.entry[0]"
        ".resource.medicationCodeableConcept.coding[0].code: RxNorm 1232089 " in error
    )


def test_one_problem_in_a_shared_fixture_is_reported_once(rules: Path) -> None:
    # The AF condition anchor is used by many cases: one error, at the anchor.
    edit(
        rules / DOAC,
        "code: '49436004', display: Atrial fibrillation}",
        "code: '49436005', display: Atrial fibrillation}",
    )
    text = (rules / DOAC).read_text()
    assert text.count("*af\n") > 3
    assert len(_found(rules)) == 1
