"""A card's indicator may come from a binding (`indicator: "{{severity}}"`): checked at load
like any template, and a value other than info/warning/critical is the rule's error, never a
card the EHR cannot show."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cds_service.rules.engine import RequestData, evaluate_rule
from cds_service.rules.ruleset import load_ruleset
from tests.rules.conftest import load_rules

RULE = """\
prefetch: {}
let:
  severity: "SEVERITY"
when:
  all:
    - id: always
      fhirpath: "true"
card:
  summary: "s"
  indicator: "{{severity}}"
  source: {label: s}
"""
NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", ["info", "warning", "critical"])
def test_the_indicator_comes_from_a_binding(tmp_path: Path, value: str) -> None:
    rule = load_rules(tmp_path, {"sev": RULE.replace("SEVERITY", f"'{value}'")})["sev"]
    outcome = evaluate_rule(rule, RequestData({"patientId": "p"}, {}, now=NOW))
    assert outcome.status == "fired" and outcome.card is not None
    assert outcome.card.indicator == value


def test_a_value_that_is_no_indicator_is_the_rules_error(tmp_path: Path) -> None:
    rule = load_rules(tmp_path, {"sev": RULE.replace("SEVERITY", "'severe'")})["sev"]
    outcome = evaluate_rule(rule, RequestData({"patientId": "p"}, {}, now=NOW))
    assert outcome.status == "error" and outcome.card is None
    assert outcome.reason is not None and "indicator" in outcome.reason


def test_an_unknown_binding_or_free_text_is_refused_at_load(tmp_path: Path) -> None:
    load_rules(tmp_path, {"sev": RULE.replace("SEVERITY", "'info'")})
    path = tmp_path / "patient-view" / "sev.yaml"
    path.write_text(path.read_text().replace('"{{severity}}"', '"{{nope}}"'))
    errors = [str(e) for e in load_ruleset(tmp_path, ["ascvd"]).errors]
    assert any("{{nope}} is not a binding" in e for e in errors), errors
    path.write_text(path.read_text().replace('"{{nope}}"', "severe"))
    errors = [str(e) for e in load_ruleset(tmp_path, ["ascvd"]).errors]
    assert any("card.indicator" in e for e in errors), errors
