"""Snoozes over HTTP: a card overridden with a reason the rule's `suppress:` lists is not shown
to that patient again until the period has passed; the rule still evaluates and says so."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.services.suppression import Override
from tests.api.test_issued_cards import audit_rows
from tests.api.test_metrics import sample
from tests.api.test_rule_services import PATIENT, rules_dir
from tests.conftest import FROZEN_NOW

__all__ = ["rules_dir"]

SYSTEM = "urn:cds-service:override-reason"
RULE = f"""\
schema: cds-rule/1
id: vaccine-due
version: 3
status: active
hook: patient-view
service: test-service
title: Vaccine due
description: A rule written by a test.
references: [https://example.org/guideline]
prefetch:
  patient: Patient/{{{{context.patientId}}}}
let:
  name: "%patient.name.first().given.first()"
when:
  id: has-name
  fhirpath: "%name.exists()"
card:
  summary: "Vaccine due for {{{{name}}}}"
  indicator: info
  source: {{label: Test rules}}
  overrideReasons:
    - {{system: "{SYSTEM}", code: patient-declined, display: Patient declined}}
    - {{system: "{SYSTEM}", code: given-elsewhere, display: Given elsewhere}}
suppress:
  reasons: [patient-declined]
  for: 6 months
"""


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(FROZEN_NOW)


@pytest.fixture
def client(tmp_path: Path, rules_dir: Path, clock: Clock) -> Any:
    (rules_dir / "patient-view").mkdir(exist_ok=True)
    (rules_dir / "patient-view" / "vaccine-due.yaml").write_text(RULE)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/f.db", rules_dir=rules_dir, builtin_services=False
    )
    with TestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client


def view(client: TestClient, patient: str = "p1") -> list[dict[str, Any]]:
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": patient},
        "prefetch": {"patient": {**PATIENT, "id": patient}},
    }
    response = client.post("/cds-services/test-service", json=body)
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


def override(client: TestClient, card: dict[str, Any], code: str, at: datetime) -> None:
    item = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": code, "system": SYSTEM}},
        "outcomeTimestamp": at.isoformat(),
    }
    response = client.post("/cds-services/test-service/feedback", json={"feedback": [item]})
    assert response.status_code == 200, response.text


def test_a_declined_card_is_snoozed_for_the_patient_until_the_period_ends(
    client: TestClient, clock: Clock
) -> None:
    [card] = view(client)
    override(client, card, "patient-declined", FROZEN_NOW)
    assert view(client) == []  # snoozed at once: this worker stored the feedback
    assert [c["summary"] for c in view(client, "p2")] == ["Vaccine due for Ada"]  # not p2
    stats = client.app.state.cds.rules.stats.counts  # type: ignore[attr-defined]
    assert stats["vaccine-due"] == {"fired": 2, "suppressed": 1, "calls": 3}
    text = client.get("/metrics").text
    assert sample(text, "cds_rule_evaluations_total", rule="vaccine-due", status="suppressed") == 1
    clock.now = FROZEN_NOW + timedelta(days=181)  # 28 May 2027: six months later to the day
    assert len(view(client)) == 1


def test_other_override_reasons_do_not_snooze(client: TestClient) -> None:
    [card] = view(client)
    override(client, card, "given-elsewhere", FROZEN_NOW)
    assert len(view(client)) == 1


def test_the_audit_counts_the_suppressed_outcome(client: TestClient) -> None:
    [card] = view(client)
    override(client, card, "patient-declined", FROZEN_NOW - timedelta(days=1))
    view(client)
    url = client.app.state.cds.settings.database_url  # type: ignore[attr-defined]
    outcomes = [r.rule_outcomes for r in audit_rows(url) if r.kind == "hook"]
    assert [[(o.rule_id, o.rule_version, o.status) for o in row] for row in outcomes] == [
        [("vaccine-due", "3", "suppressed")],
        [("vaccine-due", "3", "fired")],
    ]


def test_a_failing_lookup_shows_the_card(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    [card] = view(client)
    override(client, card, "patient-declined", FROZEN_NOW)
    store = client.app.state.resources.feedback  # type: ignore[attr-defined]

    async def broken(*args: object) -> list[Override]:
        raise ConnectionError("the database is down")

    monkeypatch.setattr(store, "overrides", broken)
    assert len(view(client)) == 1
