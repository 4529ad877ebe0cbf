"""Prefetch keys are shared by a service's rules: one template per key name per service. Two
rules of a service that give one key different templates are reported at that key's line in
each rule file."""

from __future__ import annotations

from pathlib import Path

from cds_service.rules.ruleset import load_ruleset
from cds_service.rules.runtime import known_score_names
from tests.rules.conftest import make_rules_dir, minimal_rule

OTHER_TEMPLATE = "MedicationRequest?patient={{context.patientId}}"


def _line(path: Path, needle: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def test_a_key_with_two_templates_is_reported_at_its_line_in_each_rule(tmp_path: Path) -> None:
    root = make_rules_dir(tmp_path)
    first = root / "order-select" / "a-first.yaml"
    second = root / "order-select" / "b-second.yaml"
    first.write_text(minimal_rule("a-first"))
    second.write_text(
        minimal_rule("b-second").replace(
            "activeMedications: MedicationRequest?patient={{context.patientId}}&status=active",
            f"activeMedications: {OTHER_TEMPLATE}",
        )
    )
    ruleset = load_ruleset(root, known_score_names())
    clashes = [i for i in ruleset.errors if i.field == "prefetch.activeMedications"]
    assert sorted((i.path.name, i.line, i.col) for i in clashes) == [
        ("a-first.yaml", _line(first, "activeMedications:"), 3),
        ("b-second.yaml", _line(second, "activeMedications:"), 3),
    ]
    by_file = {i.path.name: i for i in clashes}
    assert by_file["a-first.yaml"].rule_id == "a-first"
    assert "rule b-second" in by_file["a-first.yaml"].message
    assert repr(OTHER_TEMPLATE) in by_file["a-first.yaml"].message
    assert "rule a-first" in by_file["b-second.yaml"].message
    assert by_file["b-second.yaml"].rule_id == "b-second"
    # The first rule loaded keeps serving; the one that clashes with it is left out.
    assert sorted(ruleset.rules) == ["a-first"]


def test_the_same_template_under_one_key_is_no_conflict(tmp_path: Path) -> None:
    root = make_rules_dir(tmp_path)
    for rule_id in ("a-first", "b-second"):
        (root / "order-select" / f"{rule_id}.yaml").write_text(minimal_rule(rule_id))
    ruleset = load_ruleset(root, known_score_names())
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    assert sorted(ruleset.rules) == ["a-first", "b-second"]
