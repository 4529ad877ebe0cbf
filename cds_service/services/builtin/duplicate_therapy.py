"""Duplicate therapy: warns when a medication being ordered is already actively prescribed.

Ordering a drug the patient already has an active prescription for is a common cause of double
dosing (two prescribers, a renewal entered as a new order, a drug restarted after admission). For
each draft MedicationRequest (the selected ones on order-select, all on order-sign, the refill
requests on medication-refill) the service compares its RxNorm codes with the patient's active
MedicationRequests and shows a warning card per duplicated draft, suggesting removal of the new
order and offering override reasons for intended duplicates.

A duplicate is the same RxNorm code, or the same active ingredient at another strength or in
another product: the ingredients are read from the RxNorm names of the orders' codings (or their
text when it is an RxNorm-style name; `_ingredients.py` says how). An order that shares one
ingredient with a combination product is a duplicate too: lisinopril 10 mg with
lisinopril/hydrochlorothiazide 20/12.5 mg doubles the lisinopril, as acetaminophen alone with an
acetaminophen/opioid tablet doubles the acetaminophen; the card names the shared ingredient, and
"patient-on-both" is an override reason for intended combinations.

An active order that the draft itself renews or replaces (`priorPrescription`, `basedOn`,
`replaces`) and an order with the draft's own id are not duplicates of it.
"""

from __future__ import annotations

from typing import Any

from cds_service.prefetch.types import PrefetchSpec
from cds_service.services.builtin._fhir import (
    card_source,
    markdown_escape,
    medication_name,
    resource_id,
    resources_of_type,
    rxnorm_codes,
    truncate,
)
from cds_service.services.builtin._ingredients import ingredients
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.wire.contexts import MedicationRefillContext, OrderSelectContext, OrderSignContext
from cds_service.wire.response import Action, Card, OverrideReason, Suggestion

__all__ = ["SERVICE"]

TITLE = "Duplicate therapy"
OVERRIDE_SYSTEM = "urn:cds-service:override-reason"
OVERRIDE_REASONS = (
    ("intended-duplicate", "Duplicate therapy is intended"),
    ("patient-on-both", "Patient is to take both orders (e.g. dose titration or taper)"),
    ("existing-order-stopping", "The existing order is being discontinued"),
)


def _drafts(call: HookCall) -> list[dict[str, Any]]:
    context = call.context
    if isinstance(context, OrderSelectContext):
        selected = set(context.selections)
        return [
            order
            for order in resources_of_type(context.draft_orders, "MedicationRequest")
            if f"MedicationRequest/{resource_id(order)}" in selected
        ]
    if isinstance(context, OrderSignContext):
        return resources_of_type(context.draft_orders, "MedicationRequest")
    if isinstance(context, MedicationRefillContext):
        return resources_of_type(context.medications, "MedicationRequest")
    return []


def _related_ids(draft: dict[str, Any]) -> set[str]:
    """Ids of the MedicationRequests a draft renews, fulfils or replaces."""
    refs: list[Any] = [draft.get("priorPrescription")]
    for key in ("basedOn", "replaces"):
        value = draft.get(key)
        refs.extend(value if isinstance(value, list) else [value])
    return {
        ref["reference"].rsplit("/", 1)[-1]
        for ref in refs
        if isinstance(ref, dict)
        and isinstance(ref.get("reference"), str)
        and "MedicationRequest/" in ref["reference"]
    }


def _shared(draft: dict[str, Any], active: dict[str, Any]) -> set[str] | None:
    """The ingredients two orders share (empty for the same code), None when not duplicates."""
    if rxnorm_codes(draft) & rxnorm_codes(active):
        return set()
    common = ingredients(draft) & ingredients(active)
    return common or None


def _card(draft: dict[str, Any], matches: list[tuple[dict[str, Any], set[str]]]) -> Card:
    codes = rxnorm_codes(draft)
    drug = medication_name(draft) or (f"RxNorm {min(codes)}" if codes else "this medication")
    lines = []
    shared_all: set[str] = set()
    for active, shared in matches:
        name = markdown_escape(medication_name(active) or drug)
        authored = active.get("authoredOn")
        since = f", authored on {authored[:10]}" if isinstance(authored, str) and authored else ""
        ident = resource_id(active)
        order = f"active order `MedicationRequest/{ident}`" if ident else "active order"
        same = f"; same ingredient: {', '.join(sorted(shared))}" if shared else ""
        lines.append(f"- {name} ({order}{since}{same})")
        shared_all |= shared
    what = f"Its ingredient {', '.join(sorted(shared_all))} is" if shared_all else "It is"
    detail = (
        f"**{markdown_escape(drug)}** duplicates what is already prescribed for this patient:\n\n"
        + "\n".join(lines)
        + f"\n\n{what} already prescribed: ordering it again may double the dose. Remove the "
        "new order, or record why both are intended."
    )
    draft_id = resource_id(draft)
    short = truncate(drug, 90)
    suggestions = None
    if draft_id is not None:
        delete = Action(
            type="delete",
            description=f"Remove the draft order for {short}",
            resource_id=f"MedicationRequest/{draft_id}",
        )
        suggestions = [Suggestion(label=f"Remove the new order for {short}", actions=[delete])]
    return Card(
        summary=truncate(
            f"Possible duplicate therapy: {drug}"
            + (f" (same {', '.join(sorted(shared_all))})" if shared_all else "")
        ),
        detail=detail,
        indicator="warning",
        source=card_source(TITLE),
        suggestions=suggestions,
        selection_behavior="at-most-one",
        override_reasons=[
            OverrideReason(system=OVERRIDE_SYSTEM, code=code, display=display)
            for code, display in OVERRIDE_REASONS
        ],
    )


async def evaluate(call: HookCall) -> ServiceResult:
    drafts = _drafts(call)
    if not any(rxnorm_codes(draft) or ingredients(draft) for draft in drafts):
        return ServiceResult()  # nothing to check: the active medications are not needed
    active_orders = [
        order
        for order in resources_of_type(call.require("activeMedications"), "MedicationRequest")
        if order.get("status", "active") == "active" and (rxnorm_codes(order) or ingredients(order))
    ]
    cards: list[Card] = []
    seen: set[str | None] = set()
    for draft in drafts:
        draft_id = resource_id(draft)
        if not (rxnorm_codes(draft) or ingredients(draft)) or draft_id in seen:
            continue
        skip = _related_ids(draft)
        if draft_id is not None:
            seen.add(draft_id)
            skip.add(draft_id)
        matches = [
            (active, shared)
            for active in active_orders
            if resource_id(active) not in skip and (shared := _shared(draft, active)) is not None
        ]
        if matches:
            cards.append(_card(draft, matches))
    return ServiceResult(cards=cards)


SERVICE = ServiceDefinition(
    id="duplicate-therapy",
    title=TITLE,
    description="Warns when a medication being ordered duplicates an active prescription.",
    hooks=("order-select", "order-sign", "medication-refill"),
    prefetch={
        "activeMedications": PrefetchSpec(
            "MedicationRequest?patient={{context.patientId}}&status=active",
            required=False,
            all_pages=True,
        ),
    },
    evaluate=evaluate,
)
