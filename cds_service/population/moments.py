"""The calls an EHR would have made over a patient's history, and the record at each of them.

A `Moment` is one hook call: its hook, when it happens, its context, and the record as it stood
then. Derived from the record alone:

- patient-view at a given instant (`--at`), or at the start of every ambulatory encounter
  (class AMB) in a window;
- encounter-start at each Encounter's start, encounter-discharge at its end;
- order-select and order-sign for each MedicationRequest and ServiceRequest authored in the
  window, as the draft order at its `authoredOn` (order-select with it selected);
- appointment-book for each Appointment created (or, without `created`, starting) in the window.

The record at a moment holds what was documented by then: a resource whose date (the first of
`RECORDED` present) is after the moment is left out; a resource without any of those dates is
kept. What changed later is undone where the resource says when: an Encounter still going on is
`in-progress` without an end, a Condition abated later is still active. What the record does not
date (when a medication was stopped) stays as recorded, and `HISTORY_LIMITS` says so.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds_service.rules.index import parse_instant

__all__ = [
    "HISTORY_LIMITS",
    "NOT_SIMULATED",
    "RECORDED",
    "SIMULATED",
    "Moment",
    "Window",
    "date_of",
    "moments",
    "record_at",
    "recorded_at",
]

#: The date elements that say when a resource entered the record, in order of preference.
RECORDED: tuple[tuple[str, str | None], ...] = (
    ("recordedDate", None),
    ("authoredOn", None),
    ("issued", None),
    ("effectiveDateTime", None),
    ("effectivePeriod", "start"),
    ("effectiveInstant", None),
    ("occurrenceDateTime", None),
    ("occurrencePeriod", "start"),
    ("performedDateTime", None),
    ("performedPeriod", "start"),
    ("onsetDateTime", None),
    ("onsetPeriod", "start"),
    ("created", None),
    ("billablePeriod", "start"),
    ("period", "start"),
    ("start", None),
    ("date", None),
)
#: The hooks a simulation calls (in the order of calls at the same instant: the visit checks in,
#: then the chart opens), and those of the CDS Hooks library it cannot derive a call for.
SIMULATED = (
    "encounter-start",
    "patient-view",
    "appointment-book",
    "order-select",
    "order-sign",
    "encounter-discharge",
)
NOT_SIMULATED = {
    "allergyintolerance-create": "the record does not say when an allergy was being entered",
    "problem-list-item-create": "the record does not say when a problem was being added",
    "medication-refill": "refill requests are not in a Bulk Data export",
    "order-dispatch": "the record does not say when an order was dispatched or to whom",
}
HISTORY_LIMITS = (
    "a resource dated after the moment is left out; one without a date is kept",
    "an Encounter that had not ended is in-progress; a Condition abated later is active",
    "a medication stopped later still shows the status the export gives it (no stop date)",
)
_AMBULATORY = "AMB"
_ORDERS = ("MedicationRequest", "ServiceRequest")


@dataclass(frozen=True, slots=True)
class Window:
    """Moments from `start` to `end` (both included); None on a side: unbounded."""

    start: datetime | None = None
    end: datetime | None = None

    def __contains__(self, when: object) -> bool:
        if not isinstance(when, datetime):
            return False
        return (self.start is None or when >= self.start) and (self.end is None or when <= self.end)


@dataclass(slots=True)
class Moment:
    """One hook call of the simulation."""

    hook: str
    at: datetime
    context: dict[str, Any]
    record: list[dict[str, Any]] = field(default_factory=list)


def date_of(resource: dict[str, Any], element: str, part: str | None = None) -> datetime | None:
    """The date of `element` (of its `part`, for a Period) as an aware datetime, or None."""
    value = resource.get(element)
    if part is not None:
        value = value.get(part) if isinstance(value, dict) else None
    return parse_instant(value)


def recorded_at(resource: dict[str, Any]) -> datetime | None:
    """When the resource entered the record (see RECORDED), or None when it does not say."""
    for element, part in RECORDED:
        found = date_of(resource, element, part)
        if found is not None:
            return found
    return None


def _as_of(resource: dict[str, Any], at: datetime) -> dict[str, Any]:
    kind = resource.get("resourceType")
    if kind == "Encounter":
        end = date_of(resource, "period", "end")
        if end is not None and end > at:
            resource = copy.deepcopy(resource)
            resource["status"] = "in-progress"
            resource["period"].pop("end", None)
    elif kind == "Condition":
        abated = date_of(resource, "abatementDateTime", None) or date_of(
            resource, "abatementPeriod", "start"
        )
        if abated is not None and abated > at:
            resource = copy.deepcopy(resource)
            for element in ("abatementDateTime", "abatementPeriod"):
                resource.pop(element, None)
            resource["clinicalStatus"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            }
    return resource


def record_at(record: Iterable[dict[str, Any]], at: datetime) -> list[dict[str, Any]]:
    """The record as it stood at `at` (module docstring)."""
    kept = []
    for resource in record:
        when = recorded_at(resource)
        if when is None or when <= at:
            kept.append(_as_of(resource, at))
    return kept


def _reference_id(value: Any, kind: str) -> str | None:
    reference = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(reference, str):
        return None
    if reference.startswith("urn:uuid:"):
        return reference.removeprefix("urn:uuid:")
    head, _, ident = reference.rpartition("/")
    return ident if head.endswith(kind) and ident else None


def _base(patient_id: str) -> dict[str, Any]:
    return {"userId": "Practitioner/population", "patientId": patient_id}


def _draft(order: dict[str, Any]) -> dict[str, Any]:
    draft = copy.deepcopy(order)
    draft["status"] = "draft"
    return draft


def _order_moments(
    patient_id: str, order: dict[str, Any], at: datetime
) -> Iterator[tuple[str, datetime, dict[str, Any], set[str]]]:
    draft = _draft(order)
    reference = f"{order['resourceType']}/{order.get('id')}"
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}
    context = {**_base(patient_id), "draftOrders": bundle}
    encounter = _reference_id(order.get("encounter"), "Encounter")
    if encounter:
        context["encounterId"] = encounter
    # The order is being written: it is not yet in the record it is checked against.
    hidden = {reference}
    yield "order-select", at, {**context, "selections": [reference]}, hidden
    yield "order-sign", at, context, hidden


def _calls(
    patient_id: str,
    record: list[dict[str, Any]],
    hooks: Iterable[str],
    window: Window,
    at: datetime | None,
) -> Iterator[tuple[str, datetime, dict[str, Any], set[str]]]:
    wanted = set(hooks)
    for resource in record:
        kind = resource.get("resourceType")
        ident = resource.get("id")
        if kind == "Encounter" and isinstance(ident, str):
            start = date_of(resource, "period", "start")
            end = date_of(resource, "period", "end")
            context = {**_base(patient_id), "encounterId": ident}
            if "encounter-start" in wanted and start in window and start is not None:
                yield "encounter-start", start, context, set()
            if "encounter-discharge" in wanted and end in window and end is not None:
                yield "encounter-discharge", end, context, set()
            ambulatory = (resource.get("class") or {}).get("code") == _AMBULATORY
            if "patient-view" in wanted and at is None and ambulatory and start in window:
                assert start is not None
                yield "patient-view", start, {**_base(patient_id), "encounterId": ident}, set()
        elif kind in _ORDERS and isinstance(ident, str):
            authored = date_of(resource, "authoredOn", None)
            if authored is not None and authored in window:
                for call in _order_moments(patient_id, resource, authored):
                    if call[0] in wanted:
                        yield call
        elif kind == "Appointment" and isinstance(ident, str) and "appointment-book" in wanted:
            booked = date_of(resource, "created", None) or date_of(resource, "start", None)
            if booked is not None and booked in window:
                proposed = {**copy.deepcopy(resource), "status": "proposed"}
                entries = [{"resource": proposed}]
                bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
                context = {**_base(patient_id), "appointments": bundle}
                yield "appointment-book", booked, context, {f"Appointment/{ident}"}
    if "patient-view" in wanted and at is not None:
        yield "patient-view", at, _base(patient_id), set()


def moments(
    patient_id: str,
    record: list[dict[str, Any]],
    *,
    hooks: Iterable[str] = SIMULATED,
    window: Window | None = None,
    at: datetime | None = None,
) -> Iterator[Moment]:
    """The patient's calls in time order, each with the record as it stood then.

    `at`: patient-view at that instant; without it, at every ambulatory encounter in `window`.
    """
    found = sorted(
        _calls(patient_id, record, hooks, window or Window(), at),
        key=lambda call: (call[1], SIMULATED.index(call[0])),
    )
    for hook, when, context, hidden in found:
        visible = [r for r in record if f"{r.get('resourceType')}/{r.get('id')}" not in hidden]
        yield Moment(hook, when, context, record_at(visible, when))
