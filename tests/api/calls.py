"""Hook call bodies shared by the API tests, and cards recorded as issued for feedback tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

from cds_service.audit.store import AuditEntry, AuditStore, IssuedCard
from tests.conftest import FROZEN_NOW

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


def issue_cards(
    database_url: str,
    service: str,
    uuids: Iterable[str],
    *,
    tenant: str | None = None,
    rule_id: str | None = None,
    rule_version: str = "1",
    patient_id: str = "p1",
) -> None:
    """Record cards as issued by `service` to `tenant` (as a hook call that returned them would),
    so that feedback on them is accepted; `rule_id` defaults to the service's id."""
    cards = [
        IssuedCard(
            card_uuid=card,
            rule_id=rule_id or service,
            rule_version=rule_version,
            issued_at=FROZEN_NOW,
            tenant=tenant,
            service=service,
            hook="patient-view",
            hook_instance=None,
            patient_id=patient_id,
        )
        for card in uuids
    ]
    entry = AuditEntry(
        at=FROZEN_NOW,
        kind="hook",
        tenant=tenant,
        issuer=None,
        service=service,
        hook="patient-view",
        hook_instance=None,
        patient_id=patient_id,
        user_id=None,
        outcome=200,
        cards=len(cards),
        duration_ms=1.0,
    )

    async def write() -> None:
        store = await AuditStore.open(database_url)
        try:
            await store.record(entry, cards)
        finally:
            await store.close()

    asyncio.run(write())
