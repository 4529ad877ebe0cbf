"""The serving suppression source: a tenant's overrides, read from the feedback store.

The route builds one per hook call for the calling tenant and hands it to the evaluation
pipeline; the rule engine asks it (only when a rule with a `suppress:` block fires) for the
patient's overrides of those rules. The feedback table is the shared database, so an override
sent through any replica snoozes the rule on every replica (see `FeedbackStore.overrides` for how
late another worker's feedback may be seen).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cds_service.feedback.store import FeedbackStore
from cds_service.services.suppression import Override

__all__ = ["StoredOverrides"]


@dataclass(frozen=True, slots=True)
class StoredOverrides:
    """The overrides `tenant` (None without authentication) recorded, as a SuppressionSource."""

    store: FeedbackStore
    tenant: str | None

    async def overrides(self, patient_id: str, rule_ids: Collection[str]) -> Sequence[Override]:
        return await self.store.overrides(self.tenant, patient_id, rule_ids)
