"""`POST /cds-services/{id}/feedback`: what clinicians did with our cards.

Feedback belongs to a rule: each item's card must be one the service issued to the calling
tenant (`cds_issued_cards`, in the shared database, so any replica knows the cards of every
other). A batch naming a card it never issued is refused whole (400, the OperationOutcome names
each `feedback[i].card`; counted in `cds_feedback_refused_total`) and nothing of it is stored.
Otherwise each item is stored with the rule (id, version) and patient of its card.
"""

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
from cds_service.audit.store import AuditStore, IssuedCard
from cds_service.deps import ClockDep, SettingsDep
from cds_service.exceptions import Issue, RequestError
from cds_service.feedback.store import CardRule
from cds_service.metrics import Metrics
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
        issued = await _issued(audit, metrics, service.id, tenant, batch)
        cards = {
            uuid: CardRule(card.rule_id, card.rule_version, card.patient_id)
            for uuid, card in issued.items()
        }
        result = await store.record(
            service.id, batch.feedback, received_at=clock(), tenant=tenant, cards=cards
        )
        record.cards = result.stored
        for item in batch.feedback:
            reason = item.override_reason.reason if item.override_reason else None
            code = reason.code if reason is not None else "none"
            rule = issued[item.card].rule_id
            metrics.feedback.labels(service.id, rule, item.outcome, code).inc()
    payload = {"received": result.received, "stored": result.stored}
    return Response(orjson.dumps(payload), media_type="application/json")


async def _issued(
    audit: AuditStore, metrics: Metrics, service: str, tenant: str | None, batch: FeedbackBatch
) -> dict[str, IssuedCard]:
    """The batch's cards as issued by `service` to `tenant`; 400 naming each one it never was."""
    issued = await audit.issued_cards(
        {item.card for item in batch.feedback}, service=service, tenant=tenant
    )
    unknown = [i for i, item in enumerate(batch.feedback) if item.card not in issued]
    if unknown:
        metrics.feedback_refused.labels(service, "unknown-card").inc(len(unknown))
        issues = [
            Issue(
                f"feedback[{i}].card: service '{service}' issued no card with this uuid",
                f"feedback[{i}].card",
                "not-found",
            )
            for i in unknown
        ]
        raise RequestError("feedback on cards this service never issued", issues=issues)
    return issued
