"""No rule of the bundled pack takes a "no known allergy" record for an allergy: the penicillin
rules (the pack's selections over AllergyIntolerance) stay silent on a record coded with any code
of the `no-known-allergy` value set, and fire on a penicillin allergy recorded the same way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.terminology import value_set
from tests.conftest import FROZEN_NOW

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
NO_KNOWN_ALLERGY = sorted(code for system, code in value_set("no-known-allergy").codes)
PENICILLIN_ALLERGY = "91936005"
AMOXICILLIN = {"coding": [{"system": RXNORM, "code": "308192"}], "text": "Amoxicillin 500 MG"}


def allergy(code: str) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "id": f"ai-{code}",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "verificationStatus": {"coding": [{"code": "confirmed"}]},
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "patient": {"reference": "Patient/pat-1"},
    }


def medication(status: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": f"mr-{status}",
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/pat-1"},
        "medicationCodeableConcept": AMOXICILLIN,
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("nka")
    settings = Settings(database_url=f"sqlite:///{tmp / 'cds.db'}", builtin_services=False)
    with TestClient(create_app(settings, clock=lambda: FROZEN_NOW)) as test_client:
        yield test_client


def summaries(client: TestClient, hook: str, context: dict[str, Any], prefetch: Any) -> list[str]:
    body = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/prac-1", "patientId": "pat-1", **context},
        "prefetch": prefetch,
    }
    response = client.post("/cds-services/medication-safety", json=body)
    assert response.status_code == 200, response.text
    return [card["summary"] for card in response.json()["cards"]]


def order_select(client: TestClient, recorded: dict[str, Any]) -> list[str]:
    context = {
        "selections": ["MedicationRequest/mr-draft"],
        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": medication("draft")}]},
    }
    prefetch = {"allergies": bundle(recorded), "activeMedications": bundle()}
    return summaries(client, "order-select", context, prefetch)


def allergy_created(client: TestClient, recorded: dict[str, Any]) -> list[str]:
    context = {"allergyIntolerance": recorded}
    return summaries(
        client,
        "allergyintolerance-create",
        context,
        {"activeMedications": bundle(medication("active"))},
    )


def test_the_value_set_holds_the_no_known_allergy_situations() -> None:
    situations = ["716186003", "409137002", "429625007", "428607008", "428197003", "716220001"]
    expected = {(SNOMED, code) for code in [*situations, "1003774007"]}
    assert set(value_set("no-known-allergy").codes) == expected


@pytest.mark.parametrize("code", NO_KNOWN_ALLERGY)
def test_penicillin_conflict_is_silent_on_a_no_known_allergy_record(
    client: TestClient, code: str
) -> None:
    assert [s for s in order_select(client, allergy(code)) if s.startswith("Allergy:")] == []


@pytest.mark.parametrize("code", NO_KNOWN_ALLERGY)
def test_recording_no_known_allergy_is_not_a_penicillin_allergy(
    client: TestClient, code: str
) -> None:
    assert [s for s in allergy_created(client, allergy(code)) if "Penicillin allergy" in s] == []


def test_a_penicillin_allergy_recorded_the_same_way_fires_both(client: TestClient) -> None:
    penicillin = allergy(PENICILLIN_ALLERGY)
    assert [s for s in order_select(client, penicillin) if s.startswith("Allergy:")]
    assert [s for s in allergy_created(client, penicillin) if "Penicillin allergy" in s]
