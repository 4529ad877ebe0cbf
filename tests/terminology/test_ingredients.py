"""The RxNorm ingredient map and the drugs an ingredient entry of a value set takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.terminology import (
    RXNORM,
    IngredientMap,
    bundled_ingredient_map,
    ingredient_map_for,
    load_value_sets,
)
from cds_service.terminology.ingredients import COLUMNS, is_oral, is_systemic

MAP = "\n".join(
    [
        "# a comment",
        "\t".join(COLUMNS),
        "\t".join(["5640", "IN", "", "1", "", "ibuprofen"]),
        "\t".join(["310965", "SCD", "Oral Tablet", "1", "5640", "ibuprofen 200 MG Oral Tablet"]),
        "\t".join(["153008", "SBD", "Oral Tablet", "1", "5640", "ibuprofen 200 MG [Advil]"]),
        "\t".join(
            ["141997", "SCD", "Topical Gel", "1", "5640", "ibuprofen 0.05 MG/MG Topical Gel"]
        ),
        "\t".join(["858770", "SCD", "Oral Tablet", "2", "5640,5489", "hydrocodone / ibuprofen"]),
        "\t".join(["854183", "SCD", "Injection", "1", "5640", "ibuprofen 100 MG/ML Injection"]),
    ]
)


def _rules(tmp_path: Path, sets: dict[str, str], ingredients: str = MAP) -> Path:
    (tmp_path / "_valuesets").mkdir()
    (tmp_path / "_terminology").mkdir()
    (tmp_path / "_terminology" / "rxnorm-ingredients.tsv").write_text(ingredients)
    for name, text in sets.items():
        (tmp_path / "_valuesets" / f"{name}.yaml").write_text(text)
    return tmp_path / "_valuesets"


def _set(set_id: str, policy: str | None = None, include: str | None = None) -> str:
    url = "urn:cds-service:extension:ingredient-drugs"
    extension = f"extension:\n  - {{url: {url}, valueCode: {policy}}}\n" if policy else ""
    compose = f"compose:\n  include:\n    - valueSet: [{include}]\n" if include else ""
    return (
        f"resourceType: ValueSet\nid: {set_id}\n{extension}{compose}"
        f'expansion:\n  contains:\n    - {{system: "{RXNORM}", code: "5640", display: ibuprofen}}\n'
    )


def _members(directory: Path, set_id: str) -> set[str]:
    sets, issues = load_value_sets(directory)
    assert issues == []
    return {code for _, code in sets[set_id].codes}


def test_an_ingredient_entry_takes_every_drug_of_the_ingredient(tmp_path: Path) -> None:
    directory = _rules(tmp_path, {"nsaids": _set("nsaids")})
    sets, _ = load_value_sets(directory)
    every = {"310965", "153008", "141997", "858770", "854183"}
    assert _members(directory, "nsaids") == {"5640"} | every
    assert sets["nsaids"].contains(RXNORM, "153008")  # the branded drug, by its ingredient
    assert sets["nsaids"].derived == {(RXNORM, c) for c in every}


@pytest.mark.parametrize(
    ("policy", "members"),
    [
        ("oral", {"5640", "310965", "153008", "858770"}),
        ("single", {"5640", "310965", "153008", "141997", "854183"}),
        ("single-oral", {"5640", "310965", "153008"}),
        ("systemic", {"5640", "310965", "153008", "858770", "854183"}),  # not the gel
        ("listed", {"5640"}),
    ],
)
def test_the_ingredient_drugs_extension_narrows_what_an_ingredient_takes(
    tmp_path: Path, policy: str, members: set[str]
) -> None:
    directory = _rules(tmp_path, {"nsaids": _set("nsaids", policy)})
    assert _members(directory, "nsaids") == members


def test_an_including_set_gets_the_drugs_the_included_set_takes(tmp_path: Path) -> None:
    directory = _rules(
        tmp_path,
        {
            "nsaids": _set("nsaids", "oral"),
            "bleeding": "resourceType: ValueSet\nid: bleeding\ncompose:\n  include:\n"
            "    - valueSet: [nsaids]\n",
        },
    )
    assert _members(directory, "bleeding") == {"5640", "310965", "153008", "858770"}


def test_problems_of_the_map_and_the_extension_are_reported(tmp_path: Path) -> None:
    broken = MAP + "\nnot-a-code\tSCD\n" + "\t".join(["1", "SCD", "", "x", "", "bad count"])
    directory = _rules(tmp_path, {"nsaids": _set("nsaids", "some")}, broken)
    sets, issues = load_value_sets(directory)
    found = sorted(f"{i.path.name}:{i.line}: {i.message}" for i in issues)
    assert found == [
        "nsaids.yaml:4: must be one of all, oral, single, single-oral, systemic, listed",
        "rxnorm-ingredients.tsv:10: bad components or ingredients",
        "rxnorm-ingredients.tsv:9: not a drug line: not-a-code\tSCD",
    ]
    assert "nsaids" not in sets


def test_a_map_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "map.tsv"
    path.write_text("rxcui\tdisplay\n310965\tibuprofen 200 MG Oral Tablet\n")
    found, issues = IngredientMap.read(path)
    assert len(found) == 0 and [i.line for i in issues] == [1]


def test_a_rules_directory_without_a_map_reads_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "_valuesets").mkdir()
    found, issues = ingredient_map_for(tmp_path / "_valuesets")
    assert found is bundled_ingredient_map() and issues == []


def test_the_shipped_map_knows_the_branded_and_fixture_drugs() -> None:
    found = bundled_ingredient_map()
    eliquis = found.drugs["1364447"]  # apixaban 5 MG Oral Tablet [Eliquis]
    assert (eliquis.tty, eliquis.oral, eliquis.ingredients) == ("SBD", True, frozenset({"1364430"}))
    assert found.drugs["206905"].ingredients == {"5640"}  # Synthea's Ibuprofen 400 MG [Ibu]
    assert found.drugs["897718"].tty == "SCDC"  # Synthea's "Verapamil Hydrochloride 40 MG"
    assert {d.rxcui for d in found.drugs_of("1364430")} >= {"1364435", "1364445", "1364447"}


@pytest.mark.parametrize(
    ("dose_form", "oral"),
    [
        ("Oral Tablet", True),
        ("Extended Release Oral Capsule", True),
        ("Chewable Tablet", True),
        ("Oral Capsule + Oral Tablet", True),
        ("Topical Gel", False),
        ("Ophthalmic Solution", False),
        ("Oral Tablet + Topical Gel", False),
        ("", False),
    ],
)
def test_oral_dose_forms(dose_form: str, oral: bool) -> None:
    assert is_oral(dose_form) is oral


@pytest.mark.parametrize(
    ("dose_form", "systemic"),
    [
        ("Oral Tablet", True),
        ("Injection", True),
        ("Prefilled Syringe", True),
        ("Rectal Suppository", True),
        ("Metered Dose Nasal Spray", True),
        ("Transdermal System", True),
        ("Topical Gel", False),
        ("Ophthalmic Solution", False),
        ("Ophthalmic Irrigation Solution", False),
        ("Otic Suspension", False),
        ("Medicated Patch", False),
        ("Vaginal Cream", False),
        ("Oral Tablet + Topical Gel", False),
        ("", False),
    ],
)
def test_systemic_dose_forms(dose_form: str, systemic: bool) -> None:
    assert is_systemic(dose_form) is systemic
