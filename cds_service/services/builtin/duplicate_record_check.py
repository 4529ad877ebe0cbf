"""Duplicate record check: warns when a new allergy or problem is already on the patient's chart.

Duplicate allergy and problem-list entries clutter the chart, hide which entry is current, and
split later updates (one copy gets resolved, the other stays active). When a clinician creates an
AllergyIntolerance or a problem-list Condition, the service compares its codes (system + code)
with the patient's existing records and shows a warning card when one already exists.

Allergies marked entered-in-error or refuted are ignored; only active (or recurring/relapsed)
Conditions count as existing problems, since re-adding a resolved problem is legitimate.
"""

from __future__ import annotations

from typing import Any

from cds_service.prefetch.types import PrefetchSpec
from cds_service.services.builtin._fhir import (
    NOT_REAL,
    card_source,
    codings,
    concept_name,
    markdown_escape,
    resource_id,
    resources_of_type,
    status_codes,
    truncate,
)
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.wire.contexts import AllergyIntoleranceCreateContext, ProblemListItemCreateContext
from cds_service.wire.response import Card

__all__ = ["SERVICE"]

TITLE = "Duplicate record check"
ACTIVE_CONDITION = {"active", "recurrence", "relapse"}


def _existing_allergies(call: HookCall) -> list[dict[str, Any]]:
    return [
        allergy
        for allergy in resources_of_type(call.require("allergies"), "AllergyIntolerance")
        if not status_codes(allergy.get("verificationStatus")) & NOT_REAL
    ]


def _existing_conditions(call: HookCall) -> list[dict[str, Any]]:
    return [
        condition
        for condition in resources_of_type(call.require("conditions"), "Condition")
        if status_codes(condition.get("clinicalStatus")) & ACTIVE_CONDITION
        and not status_codes(condition.get("verificationStatus")) & NOT_REAL
    ]


def _card(kind: str, new: dict[str, Any], matches: list[dict[str, Any]]) -> Card:
    name = concept_name(new.get("code")) or "this entry"
    lines = []
    for match in matches:
        ident = resource_id(match)
        label = markdown_escape(concept_name(match.get("code")) or name)
        recorded = match.get("recordedDate") or match.get("assertedDate")
        when = f", recorded {recorded[:10]}" if isinstance(recorded, str) and recorded else ""
        ref = f"`{match['resourceType']}/{ident}`" if ident else "an entry without an id"
        lines.append(f"- {label} ({ref}{when})")
    detail = (
        f"The chart already has {kind} **{markdown_escape(name)}**:\n\n"
        + "\n".join(lines)
        + "\n\nUpdate the existing entry instead of adding a second one."
    )
    return Card(
        summary=truncate(f"Possible duplicate {kind}: {name}"),
        detail=detail,
        indicator="warning",
        source=card_source(TITLE),
    )


def _duplicates(
    kind: str, new_records: list[dict[str, Any]], existing: list[dict[str, Any]]
) -> list[Card]:
    cards = []
    for new in new_records:
        codes, ident = codings(new.get("code")), resource_id(new)
        matches = [
            old
            for old in existing
            if (ident is None or resource_id(old) != ident) and codes & codings(old.get("code"))
        ]
        if codes and matches:
            cards.append(_card(kind, new, matches))
    return cards


async def evaluate(call: HookCall) -> ServiceResult:
    context = call.context
    # The chart is read only when a new record has a code to compare (else nothing to check).
    if isinstance(context, AllergyIntoleranceCreateContext):
        new = [context.allergy_intolerance]
        if not any(codings(r.get("code")) for r in new):
            return ServiceResult()
        return ServiceResult(cards=_duplicates("allergy", new, _existing_allergies(call)))
    if isinstance(context, ProblemListItemCreateContext):
        new = resources_of_type(context.conditions, "Condition")
        if not any(codings(r.get("code")) for r in new):
            return ServiceResult()
        return ServiceResult(cards=_duplicates("problem", new, _existing_conditions(call)))
    return ServiceResult()


SERVICE = ServiceDefinition(
    id="duplicate-record-check",
    title=TITLE,
    description="Warns when a new allergy or problem-list entry duplicates an existing one.",
    hooks=("allergyintolerance-create", "problem-list-item-create"),
    prefetch={
        "allergies": PrefetchSpec(
            "AllergyIntolerance?patient={{context.patientId}}", required=False, all_pages=True
        ),
        "conditions": PrefetchSpec(
            "Condition?patient={{context.patientId}}&category=problem-list-item",
            required=False,
            all_pages=True,
        ),
    },
    prefetch_by_hook={
        "allergyintolerance-create": ("allergies",),
        "problem-list-item-create": ("conditions",),
    },
    evaluate=evaluate,
)
