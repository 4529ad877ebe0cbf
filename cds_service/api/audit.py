"""Writing the audit trail: one record per hook call, feedback request and discovery request.

The record is filled in as the call is understood (service, hook, hookInstance, patient, user,
the cards returned and what produced each, the rules that did not stay silent) and written when
it ends, whatever the outcome; the cards are recorded as issued in the same transaction
(`cds_issued_cards`). Writing never fails the call: a database error is logged (without the
record's content) and the answer still goes out, its cards then unknown to feedback.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from cds_service.audit.store import AuditEntry, AuditKind, AuditStore, IssuedCard
from cds_service.exceptions import CDSServiceError
from cds_service.metrics import Metrics
from cds_service.security.jwt_auth import Principal
from cds_service.services.definition import CardOrigin, RuleStatus
from cds_service.types import Clock

__all__ = ["AuditRecord", "audited"]

log = logging.getLogger("cds_service.calls")


@dataclass(slots=True)
class AuditRecord:
    """What is known about the call so far."""

    kind: AuditKind
    principal: Principal
    service: str | None = None
    hook: str | None = None
    hook_instance: str | None = None
    patient_id: str | None = None
    user_id: str | None = None
    cards: int = 0
    # The cards returned (uuid → what produced each), recorded as issued with the row.
    issued: dict[str, CardOrigin] = field(default_factory=dict)
    # A rule service's rules that did not stay silent (shadow and suppressed ones included).
    rule_outcomes: tuple[RuleStatus, ...] = ()
    outcome: int = 200
    detail: str | None = None
    started: float = field(default_factory=time.perf_counter)


def audited(
    audit: AuditStore,
    metrics: Metrics,
    clock: Clock,
    kind: AuditKind,
    principal: Principal,
    service: str | None = None,
) -> _Audited:
    """An async context manager yielding a record to fill in; when the block ends (also when it
    raises) the record is counted in `metrics` and written to `audit`. `service` is None for a
    request that concerns no one service (discovery)."""
    return _Audited(audit, metrics, clock, AuditRecord(kind, principal, service=service))


class _Audited:
    """`audited`: a class, not an async generator, as every request enters one."""

    __slots__ = ("_audit", "_clock", "_metrics", "record")

    def __init__(self, audit: AuditStore, metrics: Metrics, clock: Clock, record: AuditRecord):
        self._audit, self._metrics, self._clock, self.record = audit, metrics, clock, record

    async def __aenter__(self) -> AuditRecord:
        return self.record

    async def __aexit__(self, kind: type[BaseException] | None, exc: object, tb: object) -> None:
        record = self.record
        if kind is not None and issubclass(kind, CDSServiceError):
            record.outcome = exc.status_code  # type: ignore[attr-defined]
            record.detail = kind.__name__
        elif kind is not None and issubclass(kind, Exception):
            record.outcome = 500
            record.detail = kind.__name__
        await _write(self._audit, self._metrics, self._clock, record)  # the error goes on


async def _write(audit: AuditStore, metrics: Metrics, clock: Clock, record: AuditRecord) -> None:
    tenant = record.principal.tenant
    duration = round((time.perf_counter() - record.started) * 1000, 3)
    if log.isEnabledFor(logging.INFO):  # not even the extras of a line nobody writes
        log.info(
            "%s call",
            record.kind,
            extra={
                "tenant": tenant.id if tenant is not None else None,
                "service": record.service,
                "hook": record.hook,
                "hookInstance": record.hook_instance,
                "status": record.outcome,
                "cards": record.cards,
                "durationMs": duration,
            },
        )
    labels = (record.kind, record.service or "", record.hook or "")
    metrics.requests.labels(*labels, str(record.outcome)).inc()
    metrics.duration.labels(*labels).observe(duration / 1000)
    if record.kind == "hook" and record.cards:
        metrics.with_cards.labels(record.service or "", record.hook or "").inc()
    entry = AuditEntry(
        at=clock(),  # the app's clock, as every other time the call records
        kind=record.kind,
        tenant=tenant.id if tenant is not None else None,
        issuer=record.principal.issuer,
        service=record.service,
        hook=record.hook,
        hook_instance=record.hook_instance,
        patient_id=record.patient_id,
        user_id=record.user_id,
        outcome=record.outcome,
        cards=record.cards,
        duration_ms=duration,
        detail=record.detail,
        rule_outcomes=record.rule_outcomes,
    )
    issued = [
        IssuedCard(
            card_uuid=uuid,
            rule_id=origin.rule_id,
            rule_version=origin.rule_version,
            issued_at=entry.at,
            tenant=entry.tenant,
            service=record.service or "",
            hook=record.hook,
            hook_instance=record.hook_instance,
            patient_id=record.patient_id,
        )
        for uuid, origin in record.issued.items()
    ]
    try:
        await audit.record(entry, issued)
    except Exception as exc:
        log.error("audit record not written (%s)", type(exc).__name__)
