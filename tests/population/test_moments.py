"""The calls of a patient's history, and the record as it stood at each one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cds_service.population.moments import Window, moments, record_at

AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
IMP = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def encounter(ident: str, start: str, end: str, klass: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": ident,
        "status": "finished",
        "class": klass,
        "subject": {"reference": "Patient/p1"},
        "period": {"start": start, "end": end},
    }


RECORD: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"},
    encounter("visit", "2024-03-01T09:00:00Z", "2024-03-01T09:30:00Z", AMB),
    encounter("stay", "2024-06-01T10:00:00Z", "2024-06-05T12:00:00Z", IMP),
    {
        "resourceType": "Observation",
        "id": "bp-late",
        "status": "final",
        "effectiveDateTime": "2024-06-03T08:00:00Z",
    },
    {
        "resourceType": "Condition",
        "id": "pneumonia",
        "clinicalStatus": {"coding": [{"code": "resolved"}]},
        "onsetDateTime": "2024-06-01T11:00:00Z",
        "abatementDateTime": "2024-06-20T00:00:00Z",
    },
    {
        "resourceType": "MedicationRequest",
        "id": "amox",
        "status": "completed",
        "intent": "order",
        "authoredOn": "2024-06-02T09:00:00Z",
        "encounter": {"reference": "Encounter/stay"},
        "subject": {"reference": "Patient/p1"},
    },
    {"resourceType": "Organization", "id": "undated"},
]


def test_the_record_at_a_moment_leaves_out_what_came_later_and_undoes_later_changes() -> None:
    during = {r["id"]: r for r in record_at(RECORD, at("2024-06-02T12:00:00"))}
    assert "bp-late" not in during  # measured the day after
    assert during["stay"]["status"] == "in-progress" and "end" not in during["stay"]["period"]
    assert during["pneumonia"]["clinicalStatus"]["coding"][0]["code"] == "active"
    assert "abatementDateTime" not in during["pneumonia"]
    assert "undated" in during  # no date: kept
    # The original record is untouched.
    assert RECORD[2]["period"]["end"] == "2024-06-05T12:00:00Z"
    after = {r["id"]: r for r in record_at(RECORD, at("2024-07-01T00:00:00"))}
    assert after["pneumonia"]["clinicalStatus"]["coding"][0]["code"] == "resolved"


def test_the_history_of_calls_in_time_order() -> None:
    calls = [(m.hook, m.at.isoformat()) for m in moments("p1", RECORD)]
    assert calls == [
        ("encounter-start", "2024-03-01T09:00:00+00:00"),
        ("patient-view", "2024-03-01T09:00:00+00:00"),  # an office visit opens the chart
        ("encounter-discharge", "2024-03-01T09:30:00+00:00"),
        ("encounter-start", "2024-06-01T10:00:00+00:00"),
        ("order-select", "2024-06-02T09:00:00+00:00"),
        ("order-sign", "2024-06-02T09:00:00+00:00"),
        ("encounter-discharge", "2024-06-05T12:00:00+00:00"),
    ]


def test_an_order_is_the_draft_of_its_own_call_and_not_yet_in_the_record() -> None:
    sign = next(m for m in moments("p1", RECORD) if m.hook == "order-sign")
    [entry] = sign.context["draftOrders"]["entry"]
    assert entry["resource"]["id"] == "amox" and entry["resource"]["status"] == "draft"
    assert sign.context["encounterId"] == "stay"
    assert "amox" not in {r["id"] for r in sign.record}
    select = next(m for m in moments("p1", RECORD) if m.hook == "order-select")
    assert select.context["selections"] == ["MedicationRequest/amox"]


def test_a_window_and_a_fixed_chart_opening() -> None:
    window = Window(at("2024-05-01T00:00:00"), at("2024-06-03T00:00:00"))
    hooks = [m.hook for m in moments("p1", RECORD, window=window)]
    assert hooks == ["encounter-start", "order-select", "order-sign"]
    fixed = list(moments("p1", RECORD, hooks=["patient-view"], at=at("2025-01-01T00:00:00")))
    assert [(m.hook, m.context) for m in fixed] == [
        ("patient-view", {"userId": "Practitioner/population", "patientId": "p1"})
    ]
    assert len(fixed[0].record) == len(RECORD)
