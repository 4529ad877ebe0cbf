"""Discharge medication review: lists the active medications to reconcile before discharge.

Transitions of care are where medication errors cluster: inpatient-only drugs continued at home,
home drugs never restarted, duplicates between the two lists. Medication reconciliation at
discharge is a standard safety practice, so when a discharge begins and the patient has active
MedicationRequests the service shows an info card listing them for review.
"""

from __future__ import annotations

from cds_service.prefetch.types import PrefetchSpec
from cds_service.services.builtin._fhir import (
    card_source,
    markdown_escape,
    medication_name,
    resource_id,
    resources_of_type,
)
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.wire.response import Card

__all__ = ["SERVICE"]

TITLE = "Discharge medication review"
MAX_LISTED = 50  # keep the card readable; the rest is summarised as a count


async def evaluate(call: HookCall) -> ServiceResult:
    active = [
        order
        for order in resources_of_type(call.data("activeMedications"), "MedicationRequest")
        if order.get("status", "active") == "active"
    ]
    if not active:
        return ServiceResult()
    lines = []
    for order in active[:MAX_LISTED]:
        name = medication_name(order)
        ident = resource_id(order)
        if name is not None:
            lines.append(f"- {markdown_escape(name)}")
        else:
            lines.append(f"- Unnamed medication (`MedicationRequest/{ident or 'unknown'}`)")
    if len(active) > MAX_LISTED:
        lines.append(f"- … and {len(active) - MAX_LISTED} more")
    count = len(active)
    noun = "medication" if count == 1 else "medications"
    detail = (
        "Reconcile each active medication before discharge: continue, change or stop it, and "
        "make sure the discharge prescription matches.\n\n" + "\n".join(lines)
    )
    card = Card(
        summary=f"Review {count} active {noun} before discharge",
        detail=detail,
        indicator="info",
        source=card_source(TITLE),
    )
    return ServiceResult(cards=[card])


SERVICE = ServiceDefinition(
    id="discharge-medication-review",
    title=TITLE,
    description="Lists the patient's active medications for reconciliation at discharge.",
    hooks=("encounter-discharge",),
    prefetch={
        "activeMedications": PrefetchSpec(
            "MedicationRequest?patient={{context.patientId}}&status=active",
            required=True,
            all_pages=True,
        ),
    },
    evaluate=evaluate,
)
