"""A Python CDS service from a plugin: `stroke-risk-chads2` on patient-view.

For a patient with atrial fibrillation on record, it shows the CHADS2 score (this plugin's own
score, computed by cds-service's score machinery from the prefetched record) when it is 2 or
more: the threshold at which Gage 2001 found an annual stroke rate of 4 % without treatment.
"""

from __future__ import annotations

from typing import Any

from cds_service.prefetch.types import PrefetchSpec
from cds_service.scores import SCORES
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.wire.response import Card

SOURCE = {"label": "cds-plugin-example (CHADS2, Gage 2001)"}


def _resources(bundle: dict[str, Any] | None) -> list[dict[str, Any]]:
    if bundle is None:
        return []
    if bundle.get("resourceType") != "Bundle":
        return [bundle]
    return [e["resource"] for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict)]


async def evaluate(call: HookCall) -> ServiceResult:
    resources = _resources(call.require("patient")) + _resources(call.require("conditions"))
    score = SCORES["chads2"]
    result = score.compute(score.inputs_from_fhir(resources, call.now))
    if result.value is None or result.value < 2:
        return ServiceResult()
    card = Card.model_validate(
        {
            "summary": f"CHADS2 {result.value:g} points in atrial fibrillation",
            "indicator": "warning",
            "detail": "CHADS2 of 2 or more: consider oral anticoagulation (Gage 2001).",
            "source": SOURCE,
        }
    )
    return ServiceResult(cards=[card])


def services() -> list[ServiceDefinition]:
    """The entry point: this plugin's services."""
    return [
        ServiceDefinition(
            id="stroke-risk-chads2",
            title="Stroke risk (CHADS2)",
            description="CHADS2 of 2 or more in atrial fibrillation (an example plugin service).",
            hooks=("patient-view",),
            evaluate=evaluate,
            prefetch={
                "patient": PrefetchSpec("Patient/{{context.patientId}}", required=True),
                "conditions": PrefetchSpec(
                    "Condition?patient={{context.patientId}}", required=True
                ),
            },
        )
    ]
