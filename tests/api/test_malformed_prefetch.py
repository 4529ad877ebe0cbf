"""Malformed prefetch data never ends a call of the rule pack in a 500.

An EHR's prefetch is FHIR-shaped JSON nobody validated: a Bundle's `entry` that is not a list,
entries that are not objects, a status that is a list, a code that is a number. The rules, their
data index (natively scanned, `cds_service/fhirscan.py`) and the risk scores read it all; each
malformed shape, put in one key at a time of a real patient's prefetch (Darwin's Synthea record,
who gets two cards), must give an answer: 200 with conformant cards, or 412 where a key the
service needs is unusable, or 400 naming the key where the request itself is invalid (a
resource whose `resourceType` is not a string).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from cds_service.prefetch.templates import render_template
from tests.conformance import assert_conformant_response
from tests.conftest import FIXTURES

SERVICE = "/cds-services/preventive-care-patient-view"
DARWIN = next((FIXTURES / "fhir-r4" / "synthea").glob("Darwin_*.json"))


def each_resource(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], Any]:
    def mutate(value: Any) -> Any:
        resources = [e["resource"] for e in value.get("entry", [])] if "entry" in value else [value]
        for resource in resources:
            change(resource)
        return value

    return mutate


def setter(key: str, bad: Any) -> Callable[[dict[str, Any]], None]:
    def change(resource: dict[str, Any]) -> None:
        resource[key] = copy.deepcopy(bad)

    return change


def codings(bad: Any) -> Callable[[dict[str, Any]], None]:
    def change(resource: dict[str, Any]) -> None:
        for key in ("code", "medicationCodeableConcept", "type", "vaccineCode"):
            if isinstance(resource.get(key), dict):
                resource[key]["coding"] = copy.deepcopy(bad)

    return change


def bundle(**members: Any) -> Callable[[Any], Any]:
    def mutate(value: Any) -> Any:
        return {"resourceType": "Bundle", "type": "searchset", **members}

    return mutate


MUTATIONS: dict[str, Callable[[Any], Any]] = {
    "entry is a number": bundle(entry=5),
    "entry is a string": bundle(entry="entry"),
    "entry is an object": bundle(entry={"resource": {"resourceType": "Condition"}}),
    "entries are not objects": bundle(entry=[5, "x", None, []]),
    "an entry's resource is a number": bundle(entry=[{"resource": 5}]),
    "resourceType is a number": each_resource(setter("resourceType", 7)),
    "status is a list": each_resource(setter("status", ["final"])),
    "status is a number": each_resource(setter("status", 3)),
    "clinicalStatus is a string": each_resource(setter("clinicalStatus", "active")),
    "code is a number": each_resource(setter("code", 5)),
    "code is a list of strings": each_resource(setter("code", ["x", "y"])),
    "coding is an object": codings({"system": "http://snomed.info/sct", "code": "38341003"}),
    "codings are not objects": codings(["38341003", 5, None]),
    "a coding's code is a number": codings([{"system": "http://loinc.org", "code": 8480}]),
    "effectiveDateTime is a number": each_resource(setter("effectiveDateTime", 2020)),
    "onsetDateTime is not a date": each_resource(setter("onsetDateTime", "yesterday")),
    "valueQuantity is a string": each_resource(setter("valueQuantity", "140 mmHg")),
    "component is an object": each_resource(setter("component", {"code": "8480-6"})),
    "birthDate is a number": each_resource(setter("birthDate", 1950)),
    "medicationReference is a string": each_resource(setter("medicationReference", "#med")),
    "id is a list": each_resource(setter("id", ["a"])),
}


@pytest.fixture(scope="module")
def darwin() -> tuple[FhirDouble, dict[str, Any], datetime]:
    server = FhirDouble.from_bundle(json.loads(DARWIN.read_text()))
    patient_id = server.resources("Patient")[0]["id"]
    return (
        server,
        {"userId": "Practitioner/1", "patientId": patient_id},
        datetime(2019, 1, 1, tzinfo=UTC),
    )


@pytest.fixture(scope="module")
def served(
    darwin: tuple[FhirDouble, dict[str, Any], datetime], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    server, context, now = darwin
    folder = tmp_path_factory.mktemp("malformed")
    # Generous budgets, as the other tests that expect cards use: the first call evaluates the
    # rules cold, and on a loaded machine one ran past the 2 s call's share (no card, no error).
    settings = Settings(
        database_url=f"sqlite:///{folder}/f.db",
        builtin_services=False,
        rule_budget_seconds=10,
        hook_budget_seconds=20,
    )
    app = create_app(settings, fhir_transport=httpx.MockTransport(server.handle), clock=lambda: now)
    with TestClient(app, raise_server_exceptions=False) as client:
        services = client.get("/cds-services").json()["services"]
        templates = next(s for s in services if s["id"] == SERVICE.rsplit("/", 1)[1])["prefetch"]
        prefetch = {}
        for key, template in templates.items():
            url = render_template(template, context)
            assert url is not None, key
            answer = server.handle(httpx.Request("GET", f"{server.base_url}/{url}"))
            prefetch[key] = answer.json() if answer.status_code == 200 else None
        yield client, prefetch


def call(client: TestClient, context: dict[str, Any], prefetch: dict[str, Any]) -> httpx.Response:
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": prefetch,
    }
    response: httpx.Response = client.post(SERVICE, json=body)
    return response


def test_the_untouched_prefetch_gives_darwins_cards(darwin: Any, served: Any) -> None:
    client, prefetch = served
    response = call(client, darwin[1], prefetch)
    assert response.status_code == 200, response.text
    summaries = [card["summary"] for card in response.json()["cards"]]
    assert any(s.startswith("Hypertension not controlled") for s in summaries), summaries


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_malformed_data_in_any_key_never_gives_a_500(
    mutation: str, darwin: Any, served: Any
) -> None:
    client, prefetch = served
    for key in sorted(prefetch):
        if prefetch[key] is None:
            continue
        changed = dict(prefetch)
        changed[key] = MUTATIONS[mutation](copy.deepcopy(prefetch[key]))
        response = call(client, darwin[1], changed)
        status = response.status_code
        assert status in (200, 400, 412), (key, status, response.text)
        if status == 200:
            assert_conformant_response(response.json())
        else:
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome"
            if status == 400:  # refused at the boundary, naming the key
                assert f"prefetch.{key}" in outcome["issue"][0]["expression"], outcome
