"""Allergy documentation: reminds the clinician when a patient's allergy status is undocumented.

Prescribing safely depends on knowing the patient's allergies, and "no known allergies" is itself
something a clinician records (as an AllergyIntolerance coded with a SNOMED CT "No known ...
allergy" situation: the `no-known-allergy` value set). A chart whose records document nothing
means nobody has asked, so the service shows an info card asking for the allergy status to be
documented at the two moments it matters: when an encounter starts (intake, where the allergy
history is taken) and when a medication is selected for ordering (before it is prescribed). It
does not serve patient-view: a chart is opened for many reasons, and a documentation reminder on
every opening is the alert fatigue the card-rate gate exists to prevent (on the Synthea
population, which records no "no known allergy" statements, it carded 85 % of chart openings).

A record documents the status when it is an allergy (active or not: its history was taken), or
a "no known allergy" statement still in force; a record entered in error or refuted documents
nothing, nor does a "no known allergy" statement whose clinical status is inactive or resolved
(it was withdrawn).

It fires only when the allergy search is known to be empty. When the allergy list could not be
obtained (the FHIR server was unreachable or answered an OperationOutcome) the call answers 412
naming `prefetch.allergies`: "not checked" must not look like "nothing documented". When it was
obtained only in part (a later page unreadable) the service stays silent. An order-select whose
selections hold no MedicationRequest needs no allergy list and answers with no card.
"""

from __future__ import annotations

from typing import Any

from cds_service.prefetch.types import PrefetchSpec
from cds_service.services.builtin._fhir import (
    NOT_REAL,
    card_source,
    patient_name,
    resource_id,
    resources_of_type,
    status_codes,
    truncate,
)
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.terminology import coded, value_set
from cds_service.wire.contexts import OrderSelectContext
from cds_service.wire.fhir import is_operation_outcome
from cds_service.wire.response import Card, Link

__all__ = ["SERVICE"]

TITLE = "Allergy documentation"
REFERENCE_URL = "https://www.hl7.org/fhir/R4/allergyintolerance.html"
#: The value set of "No known ... allergy" codes (rules/_valuesets/no-known-allergy.yaml).
NO_KNOWN_ALLERGY = "no-known-allergy"
_WITHDRAWN = frozenset({"inactive", "resolved"})


def documents_status(allergy: dict[str, Any]) -> bool:
    """Whether an AllergyIntolerance documents the patient's allergy status (module doc)."""
    if status_codes(allergy.get("verificationStatus")) & NOT_REAL:
        return False
    if coded(allergy.get("code"), value_set(NO_KNOWN_ALLERGY)):
        return not status_codes(allergy.get("clinicalStatus")) & _WITHDRAWN
    return True


def _medication_selected(call: HookCall) -> bool:
    """Whether the call is about to prescribe: a selected MedicationRequest (order-select)."""
    context = call.context
    if not isinstance(context, OrderSelectContext):
        return True  # encounter-start: the intake, where the history is taken
    selected = set(context.selections)
    return any(
        f"MedicationRequest/{resource_id(order)}" in selected
        for order in resources_of_type(context.draft_orders, "MedicationRequest")
    )


def _allergies_known_empty(call: HookCall) -> bool:
    data = call.require("allergies")  # 412 when the list could not be obtained
    outcome = call.prefetch.get("allergies")
    if outcome is None or not outcome.complete:
        return False  # later pages unreadable: a record may be among them
    if data is None:  # the prefetch said null: the search found nothing
        return True
    if is_operation_outcome(data) or data.get("resourceType") not in (
        "Bundle",
        "AllergyIntolerance",
    ):
        return False
    return not any(
        documents_status(allergy) for allergy in resources_of_type(data, "AllergyIntolerance")
    )


async def evaluate(call: HookCall) -> ServiceResult:
    if not _medication_selected(call) or not _allergies_known_empty(call):
        return ServiceResult()
    who = patient_name(call.data("patient")) or "this patient"
    card = Card(
        summary=truncate(f"No allergy information documented for {who}"),
        detail=(
            "The chart records no allergy and no current **No known allergy** statement (records "
            "entered in error or refuted, and withdrawn statements, do not count). Ask about "
            "allergies and intolerances and record them, or record **No known allergies**, "
            "before medications are ordered."
        ),
        indicator="info",
        source=card_source(TITLE),
        links=[Link(label="FHIR AllergyIntolerance resource", url=REFERENCE_URL, type="absolute")],
    )
    return ServiceResult(cards=[card])


SERVICE = ServiceDefinition(
    id="allergy-documentation",
    title=TITLE,
    description=(
        "Asks for the allergy status to be documented when an encounter starts or a medication "
        "is selected for a patient whose chart records none."
    ),
    hooks=("encounter-start", "order-select"),
    prefetch={
        "patient": PrefetchSpec("Patient/{{context.patientId}}"),
        # Needed when a medication is selected or an encounter starts: without the allergy list
        # "none documented" cannot be told from "not checked", so the call answers 412 then.
        "allergies": PrefetchSpec(
            "AllergyIntolerance?patient={{context.patientId}}",
            all_pages=True,
            on_error="omit",
        ),
    },
    evaluate=evaluate,
)
