"""`POST /cds-services/{id}/feedback`: what clinicians did with our cards."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from cds_service.api.audit import audited
from cds_service.api.auth import Caller
from cds_service.api.body import parse_body
from cds_service.api.deps import AuditDep, FeedbackDep, MetricsDep, RegistryDep
from cds_service.api.hooks import find_service
from cds_service.deps import ClockDep, SettingsDep
from cds_service.wire.feedback import FeedbackBatch

__all__ = ["router"]

router = APIRouter()


@router.post(
    "/cds-services/{service_id}/feedback",
    summary="Report what happened to a service's cards",
    tags=["CDS Hooks"],
)
async def feedback(
    service_id: str,
    request: Request,
    caller: Caller,
    settings: SettingsDep,
    registry: RegistryDep,
    clock: ClockDep,
    store: FeedbackDep,
    audit: AuditDep,
    metrics: MetricsDep,
) -> Response:
    """Validate the whole batch, then store it in one transaction; replays are stored once.

    Answers 200 with `{"received": n, "stored": m}` (`m < n` when some were already recorded).
    """
    service = find_service(registry, service_id).service
    async with audited(audit, metrics, clock, "feedback", caller, service.id) as record:
        batch = await parse_body(request, settings, FeedbackBatch, "feedback")
        tenant = caller.tenant.id if caller.tenant is not None else None
        result = await store.record(service.id, batch.feedback, received_at=clock(), tenant=tenant)
        record.cards = result.stored
        for item in batch.feedback:
            reason = item.override_reason.reason if item.override_reason else None
            code = reason.code if reason is not None else "none"
            metrics.feedback.labels(service.id, item.outcome, code).inc()
    payload = {"received": result.received, "stored": result.stored}
    return Response(orjson.dumps(payload), media_type="application/json")
