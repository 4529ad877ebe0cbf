"""Allergy documentation: reminds the clinician when a patient's allergy status is undocumented.

Prescribing safely depends on knowing the patient's allergies, and "no known allergies" is itself
something a clinician records (as an AllergyIntolerance coded with a SNOMED CT "No known ...
allergy" situation: the `no-known-allergy` value set). A chart whose records document nothing
means nobody has asked, so when a chart is opened or an encounter starts the service shows an
info card asking for the allergy status to be documented. A record documents the status when it
is an allergy (active or not: its history was taken), or a "no known allergy" statement still in
force; a record entered in error or refuted documents nothing, nor does a "no known allergy"
statement whose clinical status is inactive or resolved (it was withdrawn).

It fires only when the allergy search is known to be empty. When the data could not be obtained
(the FHIR server was unreachable, an OperationOutcome came back, later pages were unreadable) the
service stays silent: claiming "nothing documented" on missing data would be false.
"""

from __future__ import annotations

from typing import Any

from cds_service.prefetch.types import PrefetchSpec
from cds_service.services.builtin._fhir import (
    NOT_REAL,
    card_source,
    patient_name,
    resources_of_type,
    status_codes,
    truncate,
)
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.terminology import coded, value_set
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


def _allergies_known_empty(call: HookCall) -> bool:
    outcome = call.prefetch.get("allergies")
    if outcome is None or not outcome.available or not outcome.complete:
        return False
    data = outcome.data
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
    if not _allergies_known_empty(call):
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
    description="Reminds the clinician to document allergies when the chart has none recorded.",
    hooks=("patient-view", "encounter-start"),
    prefetch={
        "patient": PrefetchSpec("Patient/{{context.patientId}}", required=True),
        # Required: without the allergy list, "none documented" cannot be told from "not
        # checked", so the call answers 412 instead of staying silent.
        "allergies": PrefetchSpec(
            "AllergyIntolerance?patient={{context.patientId}}", required=True, all_pages=True
        ),
    },
    evaluate=evaluate,
)
