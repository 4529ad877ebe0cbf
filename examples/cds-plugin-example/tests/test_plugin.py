"""The example plugin, installed beside cds-service: its score, function and service are found
through the entry points and work as the built-in ones do."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.cli import main
from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.rules.fhirpath import compile_path
from cds_service.rules.plugin_functions import plugin_functions
from cds_service.scores import SCORES

NOW = datetime(2026, 12, 4, 9, 30, 15, 123456, tzinfo=UTC)
SNOMED = "http://snomed.info/sct"


@pytest.mark.parametrize(
    ("inputs", "points"),
    [
        ({"age": 60, "chf": False, "hypertension": False, "diabetes": False, "stroke": False}, 0),
        ({"age": 76, "chf": False, "hypertension": True, "diabetes": False, "stroke": True}, 4),
        ({"age": 80, "chf": True, "hypertension": True, "diabetes": True, "stroke": True}, 6),
    ],
)
def test_chads2_points_as_gage_2001(inputs: dict[str, Any], points: float) -> None:
    assert SCORES["chads2"].compute(inputs).value == points


def test_chads2_is_validated_only_in_atrial_fibrillation() -> None:
    inputs = {"age": 76, "chf": False, "hypertension": True, "diabetes": False, "stroke": False}
    result = SCORES["chads2"].compute({**inputs, "atrial_fibrillation": False})
    assert result.value is None and "only in atrial fibrillation" in (result.reason or "")


def test_the_function_in_an_expression() -> None:
    compiled = compile_path(
        "(190).toMmolPerL().round(2) | %q.toMmolPerL().round(2)", functions=plugin_functions()
    )
    quantity = {"value": 3.5, "unit": "mmol/L", "code": "mmol/L"}
    # 190 mg/dL / 38.67 = 4.913 mmol/L; a quantity already in mmol/L stays as it is.
    assert compiled({}, {"q": quantity}) == [Decimal("4.91"), Decimal("3.5")]


def test_a_rule_may_use_the_plugin_score_and_function(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "_services.yaml").write_text(
        "schema: cds-services/1\nservices:\n  stroke: {title: Stroke, description: Test}\n"
    )
    (tmp_path / "chads2-high.yaml").write_text(
        """schema: cds-rule/1
id: chads2-high
version: 1
status: active
hook: patient-view
service: stroke
title: CHADS2 of 2 or more
description: Test rule on the plugin's score and function.
references: [https://doi.org/10.1001/jama.285.22.2864]
prefetch:
  patient: Patient/{{context.patientId}}
  conditions: Condition?patient={{context.patientId}}
scores: [chads2]
let:
  points: "%scores.chads2.value"
  ldlMmol: "(190).toMmolPerL()"
when: {id: high, fhirpath: "%points >= 2 and %ldlMmol > 4.9"}
card:
  summary: "CHADS2 {{points}}"
  indicator: warning
  source: {label: test}
"""
    )
    assert main(["rules", "lint", str(tmp_path)]) == 0, capsys.readouterr()


def _condition(code: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": code,
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
    }


def test_the_service_is_discovered_and_answers(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/cds.db", env="development", auth="disabled"
    )
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        services = client.get("/cds-services").json()["services"]
        ids = {s["id"] for s in services}
        assert "stroke-risk-chads2-patient-view" in ids  # one id per hook (CDS_DISCOVERY_IDS)
        conditions = [
            _condition("49436004", "Atrial fibrillation"),
            _condition("38341003", "Hypertension"),
            _condition("230690007", "Cerebrovascular accident"),
        ]
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {
                "patient": {
                    "resourceType": "Patient",
                    "id": "p1",
                    "birthDate": "1948-05-01",
                    "gender": "female",
                },
                "conditions": {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "entry": [{"resource": c} for c in conditions],
                },
            },
        }
        answer = client.post("/cds-services/stroke-risk-chads2", json=body)
        assert answer.status_code == 200, answer.text
        [card] = answer.json()["cards"]
        # 78 years (1), hypertension (1), stroke (2).
        assert card["summary"] == "CHADS2 4 points in atrial fibrillation"
