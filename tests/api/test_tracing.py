"""OpenTelemetry spans for a hook call and its FHIR fetches, with no patient ids in them."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from cds_service.services.builtin import builtin_services

EXPORTER = InMemorySpanExporter()


def provider() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        sdk = TracerProvider()
        sdk.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(sdk)


def test_hook_call_spans(settings: Settings, fhir: FhirDouble) -> None:
    provider()
    EXPORTER.clear()
    fhir.add(
        "/fhir/Patient/secret-patient-42", {"resourceType": "Patient", "id": "secret-patient-42"}
    )
    app = create_app(settings, services=builtin_services(), fhir_transport=fhir.transport)
    body = {
        "hook": "encounter-start",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {
            "userId": "Practitioner/1",
            "patientId": "secret-patient-42",
            "encounterId": "e1",
        },
    }
    with TestClient(app) as client:
        assert client.post("/cds-services/allergy-documentation", json=body).status_code == 200
    spans = {s.name: s for s in EXPORTER.get_finished_spans()}
    assert {"cds.hook", "cds.prefetch", "cds.fhir.fetch"} <= set(spans)
    hook = dict(spans["cds.hook"].attributes or {})
    assert hook["cds.service"] == "allergy-documentation"
    assert hook["cds.hook_instance"] == body["hookInstance"]
    fetches = [s for s in EXPORTER.get_finished_spans() if s.name == "cds.fhir.fetch"]
    # Two queries were missing: the server's CapabilityStatement is read too (does it take
    # batches? prefetch/batch.py), in the background of this first call.
    assert {(s.attributes or {}).get("fhir.resource_type") for s in fetches} == {
        "Patient",
        "AllergyIntolerance",
        "metadata",
    }
    assert all(s.parent is not None for s in fetches)
    for span in EXPORTER.get_finished_spans():
        assert "secret-patient-42" not in str(dict(span.attributes or {}))
