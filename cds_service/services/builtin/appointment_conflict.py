"""Appointment conflict: warns when a proposed appointment overlaps one the patient already has.

A patient cannot be in two places at once; a double booking means a missed appointment, a wasted
slot and often a delayed test or treatment. For each proposed Appointment with a start and an end,
the service looks for a booked Appointment of the patient whose [start, end) interval overlaps it
and shows a warning card naming the day and the conflicting bookings.

Times are compared only when both ends carry a UTC offset and parse as ISO 8601; appointments with
missing or malformed times are skipped rather than guessed at.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cds_service.prefetch.types import PrefetchSpec
from cds_service.services.builtin._fhir import (
    card_source,
    markdown_escape,
    parse_instant,
    resource_id,
    resources_of_type,
)
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.wire.contexts import AppointmentBookContext
from cds_service.wire.response import Card

__all__ = ["SERVICE"]

TITLE = "Appointment conflict"

Interval = tuple[datetime, datetime]


def _interval(appointment: dict[str, Any]) -> Interval | None:
    start, end = parse_instant(appointment.get("start")), parse_instant(appointment.get("end"))
    if start is None or end is None or end <= start:
        return None
    return start, end


def _describe(appointment: dict[str, Any], interval: Interval) -> str:
    start, end = interval
    what = appointment.get("description")
    label = markdown_escape(what.strip()) if isinstance(what, str) and what.strip() else None
    ident = resource_id(appointment)
    name = label or (f"Appointment/{ident}" if ident else "An appointment")
    return f"- {name}: {start.isoformat()} to {end.isoformat()}"


async def evaluate(call: HookCall) -> ServiceResult:
    context = call.context
    if not isinstance(context, AppointmentBookContext):
        return ServiceResult()
    proposed = [
        (appointment, interval)
        for appointment in resources_of_type(context.appointments, "Appointment")
        if (interval := _interval(appointment)) is not None
    ]
    if not proposed:
        return ServiceResult()  # nothing to check: the bookings are not needed
    booked: list[tuple[dict[str, Any], Interval]] = []
    for appointment in resources_of_type(call.require("bookedAppointments"), "Appointment"):
        interval = _interval(appointment)
        if interval is not None and appointment.get("status", "booked") == "booked":
            booked.append((appointment, interval))
    cards: list[Card] = []
    for appointment_proposed, wanted in proposed:
        proposed_id = resource_id(appointment_proposed)
        clashes = [
            (appointment, interval)
            for appointment, interval in booked
            if (proposed_id is None or resource_id(appointment) != proposed_id)
            and interval[0] < wanted[1]
            and wanted[0] < interval[1]
        ]
        if not clashes:
            continue
        detail = (
            f"The proposed appointment ({wanted[0].isoformat()} to {wanted[1].isoformat()}) "
            "overlaps the patient's existing booking(s):\n\n"
            + "\n".join(_describe(appointment, interval) for appointment, interval in clashes)
            + "\n\nChoose another time or reschedule the existing appointment."
        )
        day = wanted[0].date().isoformat()
        cards.append(
            Card(
                summary=f"Appointment overlaps an existing booking on {day}",
                detail=detail,
                indicator="warning",
                source=card_source(TITLE),
            )
        )
    return ServiceResult(cards=cards)


SERVICE = ServiceDefinition(
    id="appointment-conflict",
    title=TITLE,
    description="Warns when a proposed appointment overlaps one the patient has already booked.",
    hooks=("appointment-book",),
    prefetch={
        "bookedAppointments": PrefetchSpec(
            "Appointment?patient={{context.patientId}}&status=booked",
            required=False,
            all_pages=True,
        ),
    },
    evaluate=evaluate,
)
