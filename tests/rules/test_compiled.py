"""Load-time checks of a rule's expressions: value sets and scores, found in the syntax tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.rules.ruleset import load_ruleset
from tests.rules.conftest import minimal_rule


def problems(root: Path, fhirpath: str, *, scores: str = "") -> list[str]:
    """The messages of loading the minimal rule with its condition set to `fhirpath`."""
    quoted = "'" + fhirpath.replace("'", "''") + "'"  # YAML single-quoted: no escapes but ''
    text = minimal_rule("probe").replace('"%medicationCount > 0"', quoted)
    text = text.replace("let:\n", f"scores: [{scores}]\nlet:\n")
    (root / "order-select" / "probe.yaml").write_text(text)
    return [i.message for i in load_ruleset(root, ["cha2ds2-vasc"]).issues]


@pytest.mark.parametrize(
    "fhirpath",
    [
        # Each was an error when a regular expression looked for `%scores.` and `memberOf(`.
        "%medicationCount > 0 and '%scores.frailty' != ''",
        "%scores.exists()",
        "%medicationCount > 0 or 'memberOf(statins)' = ''",
    ],
)
def test_text_inside_string_literals_and_functions_of_scores_are_not_checked(
    empty_rules: Path, fhirpath: str
) -> None:
    assert problems(empty_rules, fhirpath) == []


def test_declared_scores_are_checked_wherever_they_are_read(empty_rules: Path) -> None:
    assert problems(empty_rules, "%scores .frailty.value > 1") == [
        "%scores.frailty is not declared under `scores:`"
    ]
    assert problems(empty_rules, "(%scores).`cha2ds2-vasc`.value > 1", scores="cha2ds2-vasc") == [
        "%scores.cha2ds2-vasc is not declared under `scores:`"
    ]
    assert problems(empty_rules, "%scores.cha2ds2_vasc.value > 1", scores="cha2ds2-vasc") == []


def test_memberof_names_a_known_value_set_by_a_string_literal(empty_rules: Path) -> None:
    coding = "%activeMedications.entry.resource.medication.ofType(CodeableConcept)"
    assert problems(empty_rules, f"{coding}.memberOf('oral-nsaids').anyTrue()") == []
    assert problems(empty_rules, f"{coding}.memberOf('it\\'s').anyTrue()") == [
        "unknown value set 'it's' (known: oral-anticoagulants, oral-nsaids); "
        "add it under rules/_valuesets/"
    ]
    assert problems(empty_rules, f"{coding}.memberOf('oral-nsiads').anyTrue()") == [
        "unknown value set 'oral-nsiads' (did you mean 'oral-nsaids'?)"
    ]
    assert problems(empty_rules, f"{coding}.exist()") == [
        "unknown function exist() (did you mean exists()?)"
    ]
    assert problems(empty_rules, f"{coding}.memberOf(%medicationCount).anyTrue()") == [
        "memberOf() needs a value set id in single quotes"
    ]


def test_a_binding_that_does_not_compile_is_reported_not_raised(empty_rules: Path) -> None:
    broken = "medicationCount: \"iif(true, 'it''s', '')\""
    written = 'medicationCount: "%activeMedications.entry.count()"'
    text = minimal_rule("probe").replace(written, broken)
    (empty_rules / "order-select" / "probe.yaml").write_text(text)
    ruleset = load_ruleset(empty_rules, [])
    assert "probe" not in ruleset.rules
    assert [i.message.split(":")[0] for i in ruleset.issues] == ["FHIRPath syntax error"]


def test_optional_prefetch_names_prefetch_keys(empty_rules: Path) -> None:
    text = minimal_rule("probe").replace("let:\n", "optionalPrefetch: [statements]\nlet:\n")
    (empty_rules / "order-select" / "probe.yaml").write_text(text)
    messages = [i.message for i in load_ruleset(empty_rules, []).issues]
    assert messages == ["'statements' is not a prefetch key of this rule"]
