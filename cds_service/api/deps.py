"""The CDS Hooks routes' own dependencies: `Annotated` aliases for what only they use.

What they share with the SMART routes (`StateDep`, `SettingsDep`, `ClockDep`, `HttpDep`, …) is in
`cds_service/deps.py`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from cds_service.audit.store import AuditStore
from cds_service.deps import ResourcesDep, StateDep
from cds_service.feedback.store import FeedbackStore
from cds_service.metrics import Metrics
from cds_service.services.registry import ServiceRegistry

__all__ = ["AuditDep", "FeedbackDep", "MetricsDep", "RegistryDep"]


async def get_registry(state: StateDep) -> ServiceRegistry:
    """The services served now (the registry is replaced when the rules change)."""
    return state.registry


RegistryDep = Annotated[ServiceRegistry, Depends(get_registry)]


async def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_feedback(resources: ResourcesDep) -> FeedbackStore:
    return resources.feedback


FeedbackDep = Annotated[FeedbackStore, Depends(get_feedback)]


async def get_audit(resources: ResourcesDep) -> AuditStore:
    return resources.audit


AuditDep = Annotated[AuditStore, Depends(get_audit)]
