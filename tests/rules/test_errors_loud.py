"""A rule that raises is never silent: the outcome names the binding or condition, its
`file:line:col` and expression; `rules test` fails the case whatever it expects; `rules explain`
shows the exception; the service logs the location (never the exception's text, which may quote
patient data)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cds_service.rules.engine import RequestData, evaluate_rule
from cds_service.rules.testing import run_rule_tests
from tests.rules.conftest import load_rules
from tests.rules.test_explain import explain_lazy_rule
from tests.rules.test_lazy import RULE

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
SECRET = "Observation-id-that-is-patient-data"


# Valid FHIR: a rule test's data is validated as FHIR R4 before its cases run.
_OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"}}


def _labs(*ids: str) -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {**_OBSERVATION, "id": i}} for i in ids],
    }


def test_an_error_names_the_binding_its_location_and_expression(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rule = load_rules(tmp_path, {"lazy": RULE.replace("QUANTIFIER", "any")})["lazy"]
    data = RequestData({"patientId": "p"}, {"labs": _labs(SECRET, "b")}, now=NOW)
    with caplog.at_level(logging.WARNING):
        outcome = evaluate_rule(rule, data)
    assert outcome.status == "error"
    assert outcome.failed_at == "let.only"
    assert outcome.location == f"{tmp_path / 'patient-view' / 'lazy.yaml'}:15:3"
    assert outcome.expression == "%labs.entry.resource.single().id"
    assert outcome.reason is not None and outcome.location in outcome.reason
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert outcome.location in logged and outcome.expression in logged
    assert SECRET not in logged


def test_rules_test_fails_a_case_whose_rule_errors(tmp_path: Path) -> None:
    load_rules(tmp_path, {"lazy": RULE.replace("QUANTIFIER", "any")})
    labs = json.dumps(_labs("a", "b"))
    (tmp_path / "patient-view" / "lazy.test.yaml").write_text(
        "schema: cds-rule-test/1\nrule: lazy\nnow: 2026-03-31T12:00:00Z\ncases:\n"
        "  - name: two labs\n    context: {userId: Practitioner/1, patientId: p}\n"
        f"    prefetch: {{labs: {labs}}}\n    expect: {{cards: []}}\n"
    )
    report = run_rule_tests(tmp_path)
    [result] = report.results
    assert not result.ok
    [failure] = result.failures
    assert failure.startswith("status: the rule failed (error: ValueError in let.only at ")
    assert "lazy.yaml:15:3" in failure and "single()" in failure and "fix the rule" in failure


def test_a_case_cannot_expect_an_error(tmp_path: Path) -> None:
    load_rules(tmp_path, {"lazy": RULE.replace("QUANTIFIER", "any")})
    (tmp_path / "patient-view" / "lazy.test.yaml").write_text(
        "schema: cds-rule-test/1\nrule: lazy\nnow: 2026-03-31T12:00:00Z\ncases:\n"
        "  - name: expects an error\n    context: {userId: Practitioner/1, patientId: p}\n"
        "    prefetch: {labs: null}\n    expect: {status: error}\n"
    )
    report = run_rule_tests(tmp_path)
    assert not report.ok
    assert any("expect.status" in str(i) for i in report.issues), report.issues


def test_explain_shows_the_exception_and_where_it_was_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules_dir = explain_lazy_rule(tmp_path, "any", "a", "b")
    out = capsys.readouterr().out
    assert "status: error (ValueError in let.only at " in out
    assert f"  raised by let.only at {rules_dir}/patient-view/lazy.yaml:15:3:" in out
    assert "    %labs.entry.resource.single().id" in out
