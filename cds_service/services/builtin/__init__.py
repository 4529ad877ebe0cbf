"""The built-in CDS services: one clinically sensible service per hook family.

They ship until the YAML rule engine replaces them, and double as worked examples of a service:
each module holds one `ServiceDefinition` named `SERVICE` and documents what it checks and why.

| id | hooks |
|---|---|
| `allergy-documentation` | patient-view, encounter-start |
| `duplicate-therapy` | order-select, order-sign, medication-refill |
| `appointment-conflict` | appointment-book |
| `discharge-medication-review` | encounter-discharge |
| `order-dispatch-check` | order-dispatch |
| `duplicate-record-check` | allergyintolerance-create, problem-list-item-create |
"""

from __future__ import annotations

from cds_service.services.builtin import (
    allergy_documentation,
    appointment_conflict,
    discharge_medication_review,
    duplicate_record_check,
    duplicate_therapy,
    order_dispatch_check,
)
from cds_service.services.definition import ServiceDefinition

__all__ = ["builtin_services"]


def builtin_services() -> list[ServiceDefinition]:
    """Every built-in service, in a stable order (the order discovery lists them in)."""
    return [
        allergy_documentation.SERVICE,
        duplicate_therapy.SERVICE,
        appointment_conflict.SERVICE,
        discharge_medication_review.SERVICE,
        order_dispatch_check.SERVICE,
        duplicate_record_check.SERVICE,
    ]
