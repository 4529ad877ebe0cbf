"""Draft orders shared by the soak (deploy/soak.py) and the benchmarks (bench/): an order set that
touches several rules.

It lives in deploy/ because the benchmarks already build on deploy/ (topology.py starts their
databases) while deploy/ imports nothing from bench/.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NSAID = ("849574", "Naproxen sodium 220 MG Oral Tablet")
OPIOID = ("1049221", "Acetaminophen 325 MG / oxyCODONE Hydrochloride 5 MG Oral Tablet")
METFORMIN = ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet")


def draft_orders(
    patient_id: str, drafts: Sequence[tuple[str, str]] = (NSAID, OPIOID)
) -> dict[str, Any]:
    """A `draftOrders` Bundle of draft MedicationRequests (ids `draft-0`, `draft-1`, …)."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": f"draft-{i}",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "medicationCodeableConcept": {
                        "text": text,
                        "coding": [{"system": RXNORM, "code": code, "display": text}],
                    },
                }
            }
            for i, (code, text) in enumerate(drafts)
        ],
    }
