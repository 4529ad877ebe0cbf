"""Every RxNorm code of the shared fixtures whose display names a member ingredient of a drug
class is in that class (after ingredient matching), or left out by the class's policy with its
reason; docs/drug-coverage.md is what `python -m scripts.drug_coverage` writes."""

from __future__ import annotations

import pytest

from cds_service.terminology import RXNORM, bundled_ingredient_map, value_set
from scripts import drug_coverage
from scripts.drug_terminology import CLASSES
from scripts.fixture_drugs import FIXTURES, FixtureDrug


@pytest.fixture(scope="module")
def found() -> drug_coverage.Coverage:
    assert FIXTURES.is_dir(), f"the shared fixtures are missing: {FIXTURES}"
    return drug_coverage.coverage()


def test_no_fixture_drug_that_names_a_class_is_missed(found: drug_coverage.Coverage) -> None:
    assert len(found.drugs) > 80  # every fixture folder was read
    assert [f"{class_id}: {d.code} {d.display}" for class_id, d in found.missed] == []


def test_the_report_is_current(found: drug_coverage.Coverage) -> None:
    assert drug_coverage.REPORT.read_text(encoding="utf-8") == drug_coverage.render(found), (
        "run `python -m scripts.drug_coverage`"
    )


@pytest.mark.parametrize(
    ("class_id", "code"),
    [
        ("oral-nsaids", "310965"),  # Ibuprofen 200 MG Oral Tablet
        ("oral-nsaids", "206905"),  # Ibuprofen 400 MG Oral Tablet [Ibu], a branded drug
        ("systemic-nsaids", "849574"),  # Naproxen sodium 220 MG Oral Tablet
        ("oral-anticoagulants", "855332"),  # Warfarin Sodium 5 MG Oral Tablet
        ("vitamin-k-antagonists", "855332"),
        ("statins", "314231"),  # Simvastatin 10 MG Oral Tablet
        ("opioid-analgesics", "1860154"),  # Abuse-Deterrent 12 HR Oxycodone … Extended Release
        ("antihypertensives", "897718"),  # Verapamil Hydrochloride 40 MG: by the ingredient map
        ("penicillins", "617993"),  # amoxicillin/clavulanate suspension (a CDS Hooks example)
    ],
)
def test_fixture_drugs_in_their_class(
    found: drug_coverage.Coverage, class_id: str, code: str
) -> None:
    (coverage,) = [c for c in found.classes if c.id == class_id]
    assert code in {d.code for d in coverage.listed + coverage.derived}


def test_a_topical_nsaid_is_left_out_of_the_oral_nsaids_with_its_reason() -> None:
    gel = FixtureDrug("855633", {"Diclofenac Sodium 0.01 MG/MG Topical Gel"})
    known = bundled_ingredient_map()
    assert not value_set("oral-nsaids").contains(RXNORM, gel.code)
    assert drug_coverage._why_not(gel, "oral", known) == (
        "not an oral dose form (Topical Gel): `ingredient-drugs: oral`"
    )
    assert not value_set("systemic-nsaids").contains(RXNORM, gel.code)
    assert drug_coverage._why_not(gel, "systemic", known) == (
        "applied where it acts (Topical Gel): `ingredient-drugs: systemic`"
    )
    suboxone = FixtureDrug("1010603")  # buprenorphine 2 MG / naloxone 0.5 MG … [Suboxone]
    assert not value_set("naloxone-rescue").contains(RXNORM, suboxone.code)
    assert drug_coverage._why_not(suboxone, "single", known) == (
        "a combination of 2 ingredients: `ingredient-drugs: single`"
    )


def test_the_map_knows_every_code_a_drug_class_lists() -> None:
    """So the scores answer every listed drug by its code, never by its text."""
    known = bundled_ingredient_map()
    for drug_class in CLASSES:
        listed = value_set(drug_class.id).codes_of(RXNORM)
        unknown = sorted(c for c in listed if c not in known.drugs and not known.is_ingredient(c))
        assert unknown == [], drug_class.id
