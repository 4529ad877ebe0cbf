"""The durable store for CDS Hooks feedback (`POST {baseUrl}/cds-services/{id}/feedback`).

Idempotency key
---------------
Each feedback item becomes one row of ``cds_feedback`` whose primary key is the SHA-256 (hex) of a
canonical JSON document (sorted keys, no insignificant whitespace, UTF-8) holding:

* the service id (from the URL path, so equal feedback sent to two services is two facts),
* the calling tenant, when there is one (equal feedback from two EHRs is two facts, and one
  tenant cannot pre-empt another's row); without authentication the key has no tenant member,
* the card uuid and the outcome,
* the accepted suggestion ids, de-duplicated and sorted,
* the override reason's ``system``, ``code`` and ``display`` and the ``userComment``,
* the outcome timestamp, converted to UTC and written as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

Why: an EHR that times out or loses the response retries the very same POST, and CDS Hooks gives
feedback no id of its own, so without a key derived from the content every retry would be stored
again and inflate acceptance statistics. Deriving the key from the *content* (rather than, say, the
card uuid alone) keeps distinct facts apart: a clinician may override a card and later accept it,
and these are two rows. Every member is normalised before hashing (UTC timestamp, sorted ids) so
that equivalent encodings of one fact hash alike. ``extension`` is deliberately not part of the
key: it is vendor-specific metadata about the fact, not the fact, so a retry whose extension
differs is still the same feedback (the first one stored wins).

Rows are written with ``INSERT ... ON CONFLICT (id) DO NOTHING ... RETURNING id`` in one
transaction per batch, so a batch is stored all or nothing, a retry stores nothing new, and the
number of rows actually inserted is exact on both SQLite (3.35+) and PostgreSQL.

Feedback belongs to a rule
--------------------------
The route accepts feedback only on cards the service issued to the calling tenant (the audit
trail's ``cds_issued_cards``) and passes, per card, the rule (id, version) that produced it and
the patient it was shown for: they are stored with the row (``rule_id``, ``rule_version``,
``patient_id``; NULL in rows stored before they existed), so feedback can be counted per rule and
an override can snooze its rule for that patient (``overrides``). They are not part of the
idempotency key: they follow from the card, which is.

Overrides for snoozes
---------------------
``overrides`` reads, for one tenant and patient, the latest override per rule and coded reason:
what a rule's ``suppress:`` block needs (``feedback/overrides.py`` serves it to the rule engine).
A worker keeps the answer for ``cache_seconds`` (``CDS_SUPPRESSION_CACHE_SECONDS``) and forgets
a patient's as soon as it stores feedback for that patient, so feedback sent through this worker
counts at once and feedback sent through another worker or replica within that many seconds.

Nothing from the feedback content (comments, codes, card ids) is ever logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cachetools import TTLCache
from sqlalchemy import Column, Index, MetaData, String, Table, Text, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cds_service.database import (
    UTCDateTime,
    async_database_url,
    create_engine_for,
    create_schema,
    utc,
)
from cds_service.exceptions import ConfigurationError
from cds_service.services.suppression import Override
from cds_service.wire.feedback import Feedback

__all__ = [
    "CardRule",
    "FeedbackCount",
    "FeedbackStore",
    "RecordResult",
    "StoredFeedback",
    "feedback_id",
    "metadata",
]

log = logging.getLogger(__name__)

#: Patients whose overrides a worker keeps at once (least recently read ones go first).
_OVERRIDES_CACHED = 10_000

#: Rows per INSERT statement (16 bound parameters each; well under SQLite's and asyncpg's limits).
_CHUNK = 500


metadata = MetaData()

feedback_table = Table(
    "cds_feedback",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("service_id", String(256), nullable=False),
    Column("card_uuid", String(256), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("outcome_timestamp", UTCDateTime(), nullable=False),
    Column("accepted_suggestions", Text(), nullable=False),
    Column("override_reason_system", String(1024), nullable=True),
    Column("override_reason_code", String(256), nullable=True),
    Column("override_reason_display", String(1024), nullable=True),
    Column("override_user_comment", Text(), nullable=True),
    Column("extension", Text(), nullable=True),
    Column("tenant", String(256), nullable=True),
    Column("received_at", UTCDateTime(), nullable=False),
    # The rule that produced the card and the patient it was shown for, from the issued card.
    Column("rule_id", String(256), nullable=True),
    Column("rule_version", String(64), nullable=True),
    Column("patient_id", String(256), nullable=True),
    Index("ix_cds_feedback_service_card", "service_id", "card_uuid"),
    Index("ix_cds_feedback_patient_rule", "patient_id", "rule_id"),
)


@dataclass(frozen=True, slots=True)
class CardRule:
    """What a card was, as recorded when it was issued: the rule (id, version) that produced it
    and the patient it was shown for."""

    rule_id: str
    rule_version: str
    patient_id: str | None


@dataclass(frozen=True, slots=True)
class FeedbackCount:
    """How many feedback items a rule (version) of a service got, per outcome and override
    reason code (None: no coded reason). `rule_id` is None for rows stored before feedback
    carried its rule."""

    service: str
    rule_id: str | None
    rule_version: str | None
    outcome: str
    reason: str | None
    count: int


@dataclass(frozen=True, slots=True)
class RecordResult:
    """How many feedback items a batch held, and how many were new (not stored before)."""

    received: int
    stored: int


@dataclass(frozen=True, slots=True)
class StoredFeedback:
    """One row of ``cds_feedback``; timestamps are timezone-aware (UTC) on every backend."""

    id: str
    service_id: str
    card_uuid: str
    outcome: str
    outcome_timestamp: datetime
    accepted_suggestions: tuple[str, ...]
    override_reason_system: str | None
    override_reason_code: str | None
    override_reason_display: str | None
    override_user_comment: str | None
    extension: dict[str, Any] | None
    tenant: str | None
    received_at: datetime
    rule_id: str | None = None
    rule_version: str | None = None
    patient_id: str | None = None


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _accepted_ids(item: Feedback) -> list[str]:
    return sorted({s.id for s in item.accepted_suggestions or ()})


def feedback_id(service_id: str, item: Feedback, tenant: str | None = None) -> str:
    """The idempotency key of one feedback item (see the module docstring)."""
    override = item.override_reason
    reason = override.reason if override is not None else None
    key: dict[str, Any] = {
        "serviceId": service_id,
        "card": item.card,
        "outcome": item.outcome,
        "acceptedSuggestions": _accepted_ids(item),
        "overrideReason": {
            "system": reason.system if reason is not None else None,
            "code": reason.code if reason is not None else None,
            "display": reason.display if reason is not None else None,
            "userComment": override.user_comment if override is not None else None,
        },
        "outcomeTimestamp": utc(item.outcome_timestamp).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if tenant is not None:
        key["tenant"] = tenant
    return hashlib.sha256(_canonical_json(key).encode("utf-8")).hexdigest()


def _row(
    service_id: str,
    item: Feedback,
    received_at: datetime,
    tenant: str | None,
    card: CardRule | None,
) -> dict[str, Any]:
    override = item.override_reason
    reason = override.reason if override is not None else None
    return {
        "id": feedback_id(service_id, item, tenant),
        "service_id": service_id,
        "card_uuid": item.card,
        "outcome": item.outcome,
        "outcome_timestamp": utc(item.outcome_timestamp),
        "accepted_suggestions": _canonical_json(_accepted_ids(item)),
        "override_reason_system": reason.system if reason is not None else None,
        "override_reason_code": reason.code if reason is not None else None,
        "override_reason_display": reason.display if reason is not None else None,
        "override_user_comment": override.user_comment if override is not None else None,
        "extension": _canonical_json(item.extension) if item.extension is not None else None,
        "tenant": tenant,
        "received_at": received_at,
        "rule_id": card.rule_id if card is not None else None,
        "rule_version": card.rule_version if card is not None else None,
        "patient_id": card.patient_id if card is not None else None,
    }


class FeedbackStore:
    """Feedback rows in SQLite or PostgreSQL. Open with `await FeedbackStore.open(url)`."""

    def __init__(self, engine: AsyncEngine, *, cache_seconds: float = 0.0) -> None:
        self._engine = engine
        self._overrides: TTLCache[tuple[str | None, str], tuple[Override, ...]] | None = None
        if cache_seconds > 0:
            self._overrides = TTLCache(maxsize=_OVERRIDES_CACHED, ttl=cache_seconds)

    @classmethod
    async def open(cls, database_url: str, *, cache_seconds: float = 0.0) -> FeedbackStore:
        """Connect, creating ``cds_feedback`` and its indexes if they are missing;
        `cache_seconds` is how long a patient's overrides are reused (see the module doc)."""
        url = async_database_url(database_url)
        engine = create_engine_for(url)
        try:
            await create_schema(engine, metadata)
            if not engine.dialect.insert_returning:
                raise ConfigurationError(
                    f"the {engine.dialect.name} database is too old: INSERT ... RETURNING is "
                    "required (SQLite 3.35 or later)"
                )
        except BaseException:
            await engine.dispose()
            raise
        log.info("feedback store open (%s)", engine.dialect.name)
        return cls(engine, cache_seconds=cache_seconds)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()

    async def ping(self, *, timeout: float = 2.0) -> bool:
        """Whether the database answers `SELECT 1` within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout), self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:  # a health check reports, it never raises
            log.warning("feedback store ping failed", exc_info=True)
            return False
        return True

    async def record(
        self,
        service_id: str,
        items: Sequence[Feedback],
        *,
        received_at: datetime,
        tenant: str | None = None,
        cards: Mapping[str, CardRule] | None = None,
    ) -> RecordResult:
        """Store a batch from `tenant` (None without authentication) in one transaction (all or
        nothing); items already stored are skipped. `cards` gives, by card uuid, the rule and
        patient each item's card was issued for (stored with the item).

        `stored` is the number of rows actually inserted: duplicates, whether earlier or within
        this batch, are not counted.
        """
        received_utc = utc(received_at)
        known = cards or {}
        rows: dict[str, dict[str, Any]] = {}
        for item in items:
            row = _row(service_id, item, received_utc, tenant, known.get(item.card))
            rows.setdefault(row["id"], row)
        if not rows:
            return RecordResult(received=len(items), stored=0)
        values = list(rows.values())
        stored = 0
        async with self._engine.begin() as conn:
            for start in range(0, len(values), _CHUNK):
                stored += await self._insert(conn, values[start : start + _CHUNK])
        if self._overrides is not None:  # this worker sees its own feedback at once
            for row in values:
                if row["patient_id"] is not None:
                    self._overrides.pop((tenant, row["patient_id"]), None)
        return RecordResult(received=len(items), stored=stored)

    async def overrides(
        self, tenant: str | None, patient_id: str, rule_ids: Collection[str]
    ) -> list[Override]:
        """The latest override per rule and coded reason of the cards shown to the patient in
        `tenant` (None: without authentication), for the rules `rule_ids`."""
        key = (tenant, patient_id)
        found = self._overrides.get(key) if self._overrides is not None else None
        if found is None:
            found = await self._read_overrides(tenant, patient_id)
            if self._overrides is not None:
                self._overrides[key] = found
        return [o for o in found if o.rule_id in rule_ids]

    async def _read_overrides(self, tenant: str | None, patient_id: str) -> tuple[Override, ...]:
        t = feedback_table
        reason = (t.c.rule_id, t.c.override_reason_system, t.c.override_reason_code)
        stmt = (
            select(*reason, func.max(t.c.outcome_timestamp))
            .where(
                t.c.patient_id == patient_id,
                t.c.tenant.is_(None) if tenant is None else t.c.tenant == tenant,
                t.c.outcome == "overridden",
                t.c.rule_id.is_not(None),
                t.c.override_reason_code.is_not(None),
            )
            .group_by(*reason)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return tuple(Override(rule, system, code, utc(at)) for rule, system, code, at in rows)

    async def _insert(self, conn: AsyncConnection, values: list[dict[str, Any]]) -> int:
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            stmt = (
                sqlite.insert(feedback_table)
                .values(values)
                .on_conflict_do_nothing(index_elements=[feedback_table.c.id])
                .returning(feedback_table.c.id)
            )
        elif dialect == "postgresql":
            stmt = (
                postgresql.insert(feedback_table)
                .values(values)
                .on_conflict_do_nothing(index_elements=[feedback_table.c.id])
                .returning(feedback_table.c.id)
            )
        else:  # pragma: no cover - open() only builds sqlite and postgresql engines
            raise RuntimeError(f"unsupported database dialect {dialect}")
        result = await conn.execute(stmt)
        return len(result.scalars().all())

    async def list_for_service(self, service_id: str) -> list[StoredFeedback]:
        """Every row for `service_id`, oldest outcome first."""
        t = feedback_table
        stmt = (
            select(t)
            .where(t.c.service_id == service_id)
            .order_by(t.c.outcome_timestamp, t.c.card_uuid, t.c.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [
            StoredFeedback(
                id=r["id"],
                service_id=r["service_id"],
                card_uuid=r["card_uuid"],
                outcome=r["outcome"],
                outcome_timestamp=r["outcome_timestamp"],
                accepted_suggestions=tuple(json.loads(r["accepted_suggestions"])),
                override_reason_system=r["override_reason_system"],
                override_reason_code=r["override_reason_code"],
                override_reason_display=r["override_reason_display"],
                override_user_comment=r["override_user_comment"],
                extension=json.loads(r["extension"]) if r["extension"] is not None else None,
                tenant=r["tenant"],
                received_at=r["received_at"],
                rule_id=r["rule_id"],
                rule_version=r["rule_version"],
                patient_id=r["patient_id"],
            )
            for r in rows
        ]

    async def counts_by_rule(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tenant: str | None = None,
        patient: str | None = None,
    ) -> list[FeedbackCount]:
        """Feedback received in ``since <= received_at < until`` (either bound optional), from
        `tenant` and on `patient` when given, counted per service, rule, version, outcome and
        override reason code."""
        t = feedback_table
        keys = (t.c.service_id, t.c.rule_id, t.c.rule_version, t.c.outcome)
        stmt = select(*keys, t.c.override_reason_code, func.count().label("n"))
        if since is not None:
            stmt = stmt.where(t.c.received_at >= utc(since))
        if until is not None:
            stmt = stmt.where(t.c.received_at < utc(until))
        if tenant is not None:
            stmt = stmt.where(t.c.tenant == tenant)
        if patient is not None:
            stmt = stmt.where(t.c.patient_id == patient)
        stmt = stmt.group_by(*keys, t.c.override_reason_code)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [FeedbackCount(*row) for row in rows]

    async def answered_by_rule(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> dict[tuple[str, str, str], int]:
        """Distinct cards with feedback received in the window, by (service, rule, version)."""
        t = feedback_table
        keys = (t.c.service_id, t.c.rule_id, t.c.rule_version)
        stmt = select(*keys, func.count(func.distinct(t.c.card_uuid)).label("n"))
        if since is not None:
            stmt = stmt.where(t.c.received_at >= utc(since))
        if until is not None:
            stmt = stmt.where(t.c.received_at < utc(until))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt.group_by(*keys))).all()
        return {(r[0], r[1] or "-", r[2] or "-"): int(r[3]) for r in rows}

    async def feedback_times(
        self, rule_id: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[datetime, str]]:
        """(received at, outcome) of each feedback item on `rule_id`'s cards, oldest first."""
        t = feedback_table
        stmt = select(t.c.received_at, t.c.outcome).where(t.c.rule_id == rule_id)
        if since is not None:
            stmt = stmt.where(t.c.received_at >= utc(since))
        if until is not None:
            stmt = stmt.where(t.c.received_at < utc(until))
        stmt = stmt.order_by(t.c.received_at).limit(200_000)
        async with self._engine.connect() as conn:
            return [(utc(r[0]), str(r[1])) for r in await conn.execute(stmt)]
