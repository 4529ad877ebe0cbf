"""Issued cards: one row of ``cds_issued_cards`` per card returned to an EHR.

A card's ``uuid`` is all an EHR sends back as feedback, so the card is recorded when it is
issued with what produced it (the rule's id and version, or a built-in service's id) and where it
went (tenant, service, hook, hookInstance, patient). Feedback is then feedback on a rule, and
feedback on a card this service never issued can be told apart and refused.

Rows are written by the audit store in the transaction of their call's audit row (the same group
commit), before the answer leaves, so feedback can never arrive for a card that is not recorded
yet. Cards of draft (shadow) rules are never returned, so never recorded here. ``tenant`` is NULL
without authentication, as in ``cds_audit`` and ``cds_feedback``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Column, Index, MetaData, Select, String, Table, select

from cds_service.database import UTCDateTime, storable, utc

__all__ = ["IssuedCard", "issued_cards_table", "issued_query", "issued_row"]

#: Maximum stored length of each string column (longer values are truncated).
_LENGTHS: Final = {
    "card_uuid": 256,
    "tenant": 256,
    "service": 256,
    "hook": 256,
    "hook_instance": 256,
    "patient_id": 256,
    "rule_id": 256,
    "rule_version": 64,
}


def issued_cards_table(metadata: MetaData) -> Table:
    """``cds_issued_cards``, in the audit trail's metadata."""
    return Table(
        "cds_issued_cards",
        metadata,
        # uuid4 strings we generate; a repeated one (never expected) is not written twice.
        Column("card_uuid", String(_LENGTHS["card_uuid"]), primary_key=True),
        Column("issued_at", UTCDateTime(), nullable=False),
        Column("tenant", String(_LENGTHS["tenant"]), nullable=True),
        Column("service", String(_LENGTHS["service"]), nullable=False),
        Column("hook", String(_LENGTHS["hook"]), nullable=True),
        Column("hook_instance", String(_LENGTHS["hook_instance"]), nullable=True),
        Column("patient_id", String(_LENGTHS["patient_id"]), nullable=True),
        Column("rule_id", String(_LENGTHS["rule_id"]), nullable=False),
        Column("rule_version", String(_LENGTHS["rule_version"]), nullable=False),
        Index("ix_cds_issued_cards_issued_at", "issued_at"),
        Index("ix_cds_issued_cards_rule", "rule_id", "issued_at"),
    )


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """A card returned to an EHR, and what produced it.

    `rule_id` and `rule_version` name the rule; for a built-in service's card they are the
    service id and the package version. `issued_at` is normalised to UTC."""

    card_uuid: str
    rule_id: str
    rule_version: str
    issued_at: datetime
    tenant: str | None
    service: str
    hook: str | None
    hook_instance: str | None
    patient_id: str | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "issued_at", utc(self.issued_at))


def _fit(name: str, value: str | None) -> str | None:
    return storable(value, _LENGTHS[name])


def issued_row(card: IssuedCard) -> dict[str, Any]:
    """The row written for `card` (strings cut to fit their columns)."""
    return {
        "card_uuid": _fit("card_uuid", card.card_uuid),
        "issued_at": card.issued_at,
        "tenant": _fit("tenant", card.tenant),
        "service": _fit("service", card.service),
        "hook": _fit("hook", card.hook),
        "hook_instance": _fit("hook_instance", card.hook_instance),
        "patient_id": _fit("patient_id", card.patient_id),
        "rule_id": _fit("rule_id", card.rule_id),
        "rule_version": _fit("rule_version", card.rule_version),
    }


def issued_card(row: Any) -> IssuedCard:
    """An `IssuedCard` from a row read back."""
    return IssuedCard(
        card_uuid=row["card_uuid"],
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        issued_at=row["issued_at"],
        tenant=row["tenant"],
        service=row["service"],
        hook=row["hook"],
        hook_instance=row["hook_instance"],
        patient_id=row["patient_id"],
    )


def issued_query(
    table: Table, card_uuids: Collection[str], *, service: str, tenant: str | None
) -> Select[Any]:
    """The rows of those cards issued by `service` to `tenant` (None: without authentication)."""
    t = table
    stmt = select(t).where(t.c.card_uuid.in_(sorted(set(card_uuids))), t.c.service == service)
    return stmt.where(t.c.tenant.is_(None) if tenant is None else t.c.tenant == tenant)
