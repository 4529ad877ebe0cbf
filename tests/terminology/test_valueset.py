"""Value set files: members, `is-a` filters, included value sets, ingredient names, problems."""

from __future__ import annotations

from pathlib import Path

from cds_service.rules.valuesets import member_of_function
from cds_service.terminology import ICD10_SYSTEMS, LOINC, RXNORM, SNOMED, load_value_sets, words

CM = "http://hl7.org/fhir/sid/icd-10-cm"
WHO = "http://hl7.org/fhir/sid/icd-10"
assert {CM, WHO} == ICD10_SYSTEMS

HEART_FAILURE = f"""\
resourceType: ValueSet
id: heart-failure
url: urn:test:heart-failure
expansion:
  contains:
    - {{system: "{SNOMED}", code: "84114007", display: "Heart failure"}}
compose:
  include:
    - system: {CM}
      filter:
        - {{property: concept, op: is-a, value: I50}}
        - {{property: concept, op: is-a, value: I11.0}}
"""


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_is_a_filters_match_icd10_codes_by_prefix(tmp_path: Path) -> None:
    sets, issues = load_value_sets(_write(tmp_path / "vs", {"heart-failure.yaml": HEART_FAILURE}))
    assert issues == []
    hf = sets["heart-failure"]
    assert sets["urn:test:heart-failure"] is hf
    assert hf.contains(SNOMED, "84114007")
    for code in ("I50", "I50.9", "I509", "I50.810", "I11.0", "I110"):
        assert hf.contains(CM, code), code
    assert hf.contains(None, "I50.9")  # a bare code matches in any system
    assert not hf.contains(WHO, "I50.9")  # the filter is on ICD-10-CM only
    assert not hf.contains(CM, "I11.9")
    assert not hf.contains(CM, "I5")
    assert not hf.enumerated and hf.codes_of(SNOMED) == {"84114007"}


def test_member_of_honours_is_a(tmp_path: Path) -> None:
    sets, _ = load_value_sets(_write(tmp_path / "vs", {"heart-failure.yaml": HEART_FAILURE}))
    member_of = member_of_function(sets)["memberOf"]["fn"]
    concept = {"coding": [{"system": CM, "code": "I50.22"}]}
    assert member_of([concept], "heart-failure") == [True]
    assert member_of([{"coding": [{"system": CM, "code": "I51"}]}], "heart-failure") == [False]


def test_included_value_sets_add_their_members(tmp_path: Path) -> None:
    files = {
        "heart-failure.yaml": HEART_FAILURE,
        "cardiac.yaml": f"""\
resourceType: ValueSet
id: cardiac
compose:
  include:
    - valueSet: [urn:test:heart-failure, inr]
    - system: {SNOMED}
      concept: [{{code: "22298006"}}]
""",
        "inr.yaml": f"""\
resourceType: ValueSet
id: inr
expansion:
  contains: [{{system: "{LOINC}", code: "6301-6"}}]
""",
    }
    sets, issues = load_value_sets(_write(tmp_path / "vs", files))
    assert issues == []
    cardiac = sets["cardiac"]
    assert cardiac.contains(SNOMED, "22298006") and cardiac.contains(SNOMED, "84114007")
    assert cardiac.contains(CM, "I50.9") and cardiac.contains(LOINC, "6301-6")


def test_ingredient_names_come_from_displays_and_the_extension(tmp_path: Path) -> None:
    text = f"""\
resourceType: ValueSet
id: anticoagulants
extension:
  - {{url: "urn:cds-service:extension:ingredient-name", valueString: "Acenocoumarol"}}
expansion:
  contains:
    - {{system: "{RXNORM}", code: "11289", display: "warfarin"}}
    - {{system: "{RXNORM}", code: "1037042", display: "dabigatran etexilate"}}
    - {{system: "{RXNORM}", code: "855332", display: "warfarin sodium 5 MG Oral Tablet"}}
    - {{system: "{SNOMED}", code: "1", display: "heparin"}}
"""
    sets, issues = load_value_sets(_write(tmp_path / "vs", {"anticoagulants.yaml": text}))
    assert issues == []
    drugs = sets["anticoagulants"]
    assert drugs.names == {("warfarin",), ("dabigatran", "etexilate"), ("acenocoumarol",)}
    assert drugs.names_in(words("Warfarin Sodium 2 MG Oral Tablet"))
    assert drugs.names_in(words("acenocoumarol 4 mg"))
    assert drugs.names_in(words("Etexilate (dabigatran) 150 MG"))
    assert not drugs.names_in(words("dabigatran 150 MG"))  # every word of a name
    assert not drugs.names_in(words("heparin 5000 UNT/ML"))  # not an RxNorm entry


def test_problems_are_reported_with_their_line_and_the_file_left_out(tmp_path: Path) -> None:
    files = {
        "ops.yaml": f"""\
resourceType: ValueSet
id: ops
compose:
  include:
    - system: {CM}
      filter:
        - {{property: concept, op: regex, value: "I5.*"}}
    - system: {SNOMED}
      filter:
        - {{property: concept, op: is-a, value: "84114007"}}
""",
        "loops.yaml": "resourceType: ValueSet\nid: loops\ncompose:\n  include:\n"
        "    - valueSet: [loops2]\n",
        "loops2.yaml": "resourceType: ValueSet\nid: loops2\ncompose:\n  include:\n"
        "    - valueSet: [loops]\n",
        "missing.yaml": "resourceType: ValueSet\nid: missing\ncompose:\n  include:\n"
        "    - valueSet: [nowhere]\n",
        "both.yaml": f"resourceType: ValueSet\nid: both\ncompose:\n  include:\n"
        f"    - {{system: {SNOMED}, valueSet: [ops]}}\n",
        "excluding.yaml": f"""\
resourceType: ValueSet
id: excluding
expansion:
  contains: [{{system: "{SNOMED}", code: "1"}}]
compose:
  exclude: [{{system: "{SNOMED}", concept: [{{code: "1"}}]}}]
""",
        "empty.yaml": "resourceType: ValueSet\nid: empty\n",
    }
    sets, issues = load_value_sets(_write(tmp_path / "vs", files))
    assert sets == {}
    found = sorted(f"{i.path.name}:{i.line}: {i.field}: {i.message}" for i in issues)
    assert found == [
        "both.yaml:5: compose.include[0]: include either a `system` or `valueSet`s, not both",
        "empty.yaml:1: expansion: the value set has no codes",
        "excluding.yaml:6: compose.exclude: `exclude` is not supported",
        "loops.yaml:5: compose.include: value set 'loops2' did not load",
        "loops2.yaml:5: compose.include: value set 'loops' includes itself",
        "missing.yaml:5: compose.include: unknown value set 'nowhere'",
        "ops.yaml:10: compose.include[1].filter[0]: `is-a` filters are supported for ICD-10 "
        "systems only",
        "ops.yaml:7: compose.include[0].filter[0]: only `property: concept, op: is-a` is supported",
    ]


def test_the_bundled_value_sets_load() -> None:
    from cds_service.terminology import bundled_value_sets, value_set

    sets = bundled_value_sets()
    assert value_set("hba1c") is sets["hba1c"]
    assert value_set("hba1c").contains(LOINC, "4549-2")


RACE_SPECIFIC_EGFR = ("48643-1", "48642-3", "88293-6", "88294-4")
RACE_COEFFICIENT_OR_UNSTATED_EGFR = ("33914-3", "77147-7", "50044-7", "70969-1", "62238-1")


def test_the_egfr_set_holds_only_the_race_free_ckd_epi_2021_codes() -> None:
    """An "among blacks" eGFR of 33 must not stand for the race-free 28 (metformin stops
    below 30): only CKD-EPI 2021 results count; rules read creatinine otherwise."""
    from cds_service.terminology import value_set

    egfr = value_set("egfr")
    assert egfr.contains(LOINC, "98979-8") and egfr.contains(LOINC, "98980-6")
    for code in RACE_SPECIFIC_EGFR + RACE_COEFFICIENT_OR_UNSTATED_EGFR:
        assert not egfr.contains(LOINC, code), code
    assert egfr.codes == {(LOINC, "98979-8"), (LOINC, "98980-6")}


def test_an_unchanged_directory_is_not_read_again_and_a_changed_one_is(tmp_path: Path) -> None:
    import os

    folder = _write(tmp_path / "vs", {"heart-failure.yaml": HEART_FAILURE})
    first, _ = load_value_sets(folder)
    again, issues = load_value_sets(folder)
    assert again == first and again is not first and issues == []
    # Same directory through a link (a workbench draft's): the same sets.
    (tmp_path / "draft").mkdir()
    (tmp_path / "draft" / "_valuesets").symlink_to(folder)
    linked, _ = load_value_sets(tmp_path / "draft" / "_valuesets")
    assert linked == first
    # An edited file is read again (its size and modification time changed).
    path = folder / "heart-failure.yaml"
    path.write_text(HEART_FAILURE.replace("84114007", "42343007"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    edited, _ = load_value_sets(folder)
    assert (SNOMED, "42343007") in edited["heart-failure"].codes
    assert (SNOMED, "84114007") not in edited["heart-failure"].codes


def test_a_directory_with_problems_reports_them_every_time(tmp_path: Path) -> None:
    folder = _write(tmp_path / "vs", {"broken.yaml": "resourceType: ValueSet\nid: [\n"})
    for _ in range(2):
        _, issues = load_value_sets(folder)
        assert issues and issues[0].path.name == "broken.yaml"
