"""Bad input of every kind gets the right status and an OperationOutcome naming the field."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conformance import assert_operation_outcome

SERVICE = "/cds-services/allergy-documentation"
TOKEN = "secret-token-never-echoed"


def valid_request(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "encounter-start",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": "1288992", "encounterId": "e1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "1288992"},
            "allergies": {"resourceType": "Bundle", "type": "searchset"},
        },
    }
    body.update(changes)
    return body


def test_valid_request_is_accepted(client: TestClient) -> None:
    assert client.post(SERVICE, json=valid_request()).status_code == 200


@pytest.mark.parametrize("field", ["hook", "hookInstance", "context"])
def test_missing_required_field(client: TestClient, field: str) -> None:
    body = valid_request()
    del body[field]
    response = client.post(SERVICE, json=body)
    assert response.status_code == 400
    assert_operation_outcome(response.json(), field)


@pytest.mark.parametrize(
    "instance", ["not-a-uuid", "", 12345, None, "d1577c69dfbe44adba6d3e05e953b2ea", "zzzz"]
)
def test_hook_instance_must_be_a_uuid(client: TestClient, instance: Any) -> None:
    response = client.post(SERVICE, json=valid_request(hookInstance=instance))
    assert response.status_code == 400
    assert_operation_outcome(response.json(), "hookInstance")


def test_fhir_authorization_without_fhir_server(client: TestClient) -> None:
    auth = {
        "access_token": TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds",
    }
    response = client.post(SERVICE, json=valid_request(fhirAuthorization=auth))
    assert response.status_code == 400
    assert_operation_outcome(response.json(), "fhirServer")
    assert TOKEN not in response.text


def test_bad_token_type_does_not_echo_the_token(client: TestClient) -> None:
    auth = {"access_token": TOKEN, "token_type": "MAC"}
    body = valid_request(fhirServer="https://ehr.example.org/fhir", fhirAuthorization=auth)
    response = client.post(SERVICE, json=body)
    assert response.status_code == 400
    assert_operation_outcome(response.json(), "fhirAuthorization.token_type")
    assert TOKEN not in response.text


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hook": 7}, "hook"),
        ({"hook": "not a hook!"}, "hook"),
        ({"context": []}, "context"),
        ({"context": "patient"}, "context"),
        ({"prefetch": []}, "prefetch"),
        ({"prefetch": {"patient": "Patient/1"}}, "prefetch.patient"),
        ({"prefetch": {"patient": {"id": "no-resource-type"}}}, "prefetch.patient"),
        ({"fhirServer": "ftp://ehr.example.org"}, "fhirServer"),
        ({"fhirServer": 42}, "fhirServer"),
        ({"extension": "x"}, "extension"),
    ],
)
def test_wrong_types(client: TestClient, changes: dict[str, Any], field: str) -> None:
    response = client.post(SERVICE, json=valid_request(**changes))
    assert response.status_code == 400, response.text
    assert_operation_outcome(response.json(), field)


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"patientId": "1", "encounterId": "e1"}, "context.userId"),
        ({"userId": "Practitioner/1", "encounterId": "e1"}, "context.patientId"),
        ({"userId": "Device/1", "patientId": "1", "encounterId": "e1"}, "context.userId"),
        ({"userId": "Practitioner", "patientId": "1", "encounterId": "e1"}, "context.userId"),
        ({"userId": "Practitioner/1", "patientId": "a/b", "encounterId": "e"}, "context.patientId"),
        ({"userId": "Practitioner/1", "patientId": 12, "encounterId": "e"}, "context.patientId"),
        ({"userId": "Practitioner/1", "patientId": "1"}, "context.encounterId"),
        (
            {"userId": "Practitioner/1", "patientId": "1", "encounterId": ["x"]},
            "context.encounterId",
        ),
    ],
)
def test_bad_context(client: TestClient, context: dict[str, Any], field: str) -> None:
    response = client.post(SERVICE, json=valid_request(context=context))
    assert response.status_code == 400
    assert_operation_outcome(response.json(), field)


def test_bad_draft_orders_names_the_entry(client: TestClient) -> None:
    body = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/1",
            "patientId": "1",
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": "oops"}]},
        },
    }
    response = client.post("/cds-services/duplicate-therapy", json=body)
    assert response.status_code == 400
    assert_operation_outcome(response.json(), "context.draftOrders")


def test_unknown_hook_name(client: TestClient) -> None:
    response = client.post(SERVICE, json=valid_request(hook="patient-teleport"))
    assert response.status_code == 400
    assert_operation_outcome(response.json(), "hook", "neither a hook of the HL7 hook library")


@pytest.mark.parametrize("hook", ["order-sign", "org.example.patient-transmogrify"])
def test_hook_not_served_by_this_service(client: TestClient, hook: str) -> None:
    response = client.post(SERVICE, json=valid_request(hook=hook))
    assert response.status_code == 400
    assert_operation_outcome(response.json(), "hook", "does not serve")


def test_unknown_service(client: TestClient) -> None:
    response = client.post("/cds-services/no-such-service", json=valid_request())
    assert response.status_code == 404
    assert_operation_outcome(response.json(), "no-such-service")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(SERVICE, content=json.dumps(valid_request()), headers=headers)
    assert response.status_code == 415
    assert_operation_outcome(response.json(), "Content-Type")


def test_json_with_charset_is_fine(client: TestClient) -> None:
    headers = {"content-type": "application/json; charset=utf-8"}
    response = client.post(SERVICE, content=json.dumps(valid_request()), headers=headers)
    assert response.status_code == 200


def test_body_over_limit_by_content_length(client: TestClient) -> None:
    limit = client.app.state.cds.settings.max_body_bytes  # type: ignore[attr-defined]
    body = valid_request(extension={"org.example.padding": "x" * limit})
    response = client.post(SERVICE, json=body)
    assert response.status_code == 413
    assert_operation_outcome(response.json(), "limit")


def test_body_over_limit_when_streamed_without_length(client: TestClient) -> None:
    limit = client.app.state.cds.settings.max_body_bytes  # type: ignore[attr-defined]

    def chunks() -> Any:
        yield b'{"hook": "patient-view", "pad": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = client.post(SERVICE, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("depth", [100, 5000])
def test_deeply_nested_json(client: TestClient, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    raw = json.dumps(valid_request())[:-1] + f', "extension": {{"org.example.deep": {nested}}}}}'
    response = client.post(SERVICE, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert_operation_outcome(response.json())


@pytest.mark.parametrize("raw", [b"", b"{", b"null", b"[1,2]", b'"text"', b"\xff\xfe", b"{'a': 1}"])
def test_not_a_json_object(client: TestClient, raw: bytes) -> None:
    response = client.post(SERVICE, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_extension_and_top_level_members_are_ignored(client: TestClient) -> None:
    body = valid_request(extension={"com.example.timestamp": "2017-11-27T22:13:25Z"})
    body["org.example.future-field"] = {"anything": True}
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200


def test_method_not_allowed_is_an_operation_outcome(client: TestClient) -> None:
    response = client.get(SERVICE)
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_path_is_an_operation_outcome(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def _mutations(value: Any, path: tuple[Any, ...] = ()) -> Any:
    """Every way of replacing one member of `value` with a value of the wrong kind."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _mutations(item, (*path, key))
            yield (*path, key), "__delete__"
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _mutations(item, (*path, index))
    for garbage in (None, 0, -1.5, True, "", "x" * 300, [], {}, [None], {"a": None}):
        yield path, garbage


def test_never_a_500_for_any_single_mutation(client: TestClient) -> None:
    """Replace or delete each member of a valid order-sign call in turn: never a 500."""
    base: dict[str, Any] = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "fhirAuthorization": {
            "access_token": "t",
            "token_type": "Bearer",
            "expires_in": 30,
            "scope": "patient/*.read",
            "subject": "cds",
        },
        "context": {
            "userId": "Practitioner/1",
            "patientId": "1",
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "MedicationRequest",
                            "id": "d1",
                            "status": "draft",
                            "medicationCodeableConcept": {
                                "coding": [
                                    {
                                        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                        "code": "197361",
                                    }
                                ]
                            },
                        }
                    }
                ],
            },
        },
        "prefetch": {
            "activeMedications": {
                "resourceType": "Bundle",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "MedicationRequest",
                            "id": "a1",
                            "status": "active",
                            "medicationCodeableConcept": {
                                "coding": [
                                    {
                                        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                        "code": "197361",
                                    }
                                ]
                            },
                        }
                    }
                ],
            }
        },
    }
    statuses: dict[int, int] = {}
    for path, replacement in _mutations(base):
        if not path:
            continue
        body = copy.deepcopy(base)
        target: Any = body
        for part in path[:-1]:
            target = target[part]
        if replacement == "__delete__":
            del target[path[-1]]
        else:
            target[path[-1]] = replacement
        response = client.post("/cds-services/duplicate-therapy", json=body)
        assert response.status_code in (200, 400, 412), (path, replacement, response.text)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    assert statuses.get(400, 0) > 50 and statuses.get(200, 0) > 10
