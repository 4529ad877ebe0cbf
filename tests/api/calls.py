"""Hook call bodies shared by the API tests."""

from __future__ import annotations

import uuid
from typing import Any

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def nsaid_on_warfarin_call() -> dict[str, Any]:
    """An order-select call selecting ibuprofen for a patient on warfarin (the NSAID rule
    fires), with the active medications prefetched."""
    draft = {
        "resourceType": "MedicationRequest",
        "id": "d1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "text": "Ibuprofen 200 MG Oral Tablet",
            "coding": [{"system": RXNORM, "code": "310965"}],
        },
    }
    active = {
        "resourceType": "MedicationRequest",
        "id": "a1",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {"system": RXNORM, "code": "855332", "display": "Warfarin Sodium 5 MG Oral Tablet"}
            ]
        },
    }
    return {
        "hook": "order-select",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/1",
            "patientId": "p1",
            "selections": ["MedicationRequest/d1"],
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]},
        },
        "prefetch": {
            "activeMedications": {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": active}],
            }
        },
    }
