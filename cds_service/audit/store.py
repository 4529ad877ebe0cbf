"""The audit trail: one row of ``cds_audit`` per hook call, feedback call or discovery request.

Each row records who called (tenant, JWT issuer, user id), what (service, hook, hookInstance,
patient id), the HTTP status answered, how many cards were returned (for feedback: how many items
were newly stored), how long it took, a short machine reason (``detail``, e.g.
``"412 prefetch"``) and, for a rule service's hook call, each rule that did not stay silent and
how it ended (``rule_outcomes``, JSON: ``[{"rule": id, "version": v, "status": s}]`` with status
``fired``, ``shadow`` (a draft rule that would have fired: its card was not returned),
``suppressed``, ``skipped``, ``error`` or ``timeout``; NULL when every rule stayed silent).
Nothing else: no tokens, no request bodies, no free text from the request.

Rows are append-only. Recording is cheap enough to do on every call because writes are grouped
(group commit): the rows recorded while one transaction is being written go together into the
next one, and each caller returns once the transaction holding its own row has committed, so an
answered call is as durably audited as with one transaction per row, at a fraction of the cost
under concurrency.

The cards a hook call returned are written in the same transaction as its row, to
``cds_issued_cards`` (see ``issued.py``): card uuid → the rule that produced it.

The tables live in the same database as ``cds_feedback`` (same ``CDS_DATABASE_URL``) but have their
own SQLAlchemy ``MetaData``, so each store creates only its own tables and either may be opened
first. Timestamps are stored in UTC and read back timezone-aware on SQLite and PostgreSQL alike.

String columns have a maximum length; longer values are cut to fit rather than failing the write
(identifiers this long are not legitimate, and an audit write must not turn a call into an error).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, cast, get_args

import asyncpg
import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from cds_service.audit.issued import (
    IssuedCard,
    issued_card,
    issued_cards_table,
    issued_query,
    issued_row,
)
from cds_service.audit.summary import (
    KeyCount,
    KeyStatus,
    Window,
    audited_outcomes,
    call_counts,
    issued_counts,
    issued_times,
)
from cds_service.database import (
    UTCDateTime,
    async_database_url,
    create_engine_for,
    create_schema,
    storable,
    utc,
)
from cds_service.services.definition import RuleStatus

__all__ = [
    "AuditEntry",
    "AuditKind",
    "AuditStore",
    "IssuedCard",
    "RuleStatus",
    "audit_metadata",
    "audit_table",
    "issued_table",
]

log = logging.getLogger(__name__)

AuditKind = Literal["hook", "feedback", "discovery", "chart-write"]
_KINDS: Final = frozenset(get_args(AuditKind))

#: Maximum stored length of each string column (longer values are truncated).
_LENGTHS: Final = {
    "tenant": 256,
    "issuer": 1024,
    "service": 256,
    "hook": 256,
    "hook_instance": 256,
    "patient_id": 256,
    "user_id": 256,
    "detail": 128,
}

audit_metadata = MetaData()

audit_table = Table(
    "cds_audit",
    audit_metadata,
    # BIGSERIAL on PostgreSQL; INTEGER PRIMARY KEY (the rowid, autoincrementing) on SQLite.
    Column(
        "id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("tenant", String(_LENGTHS["tenant"]), nullable=True),
    Column("issuer", String(_LENGTHS["issuer"]), nullable=True),
    Column("service", String(_LENGTHS["service"]), nullable=True),
    Column("hook", String(_LENGTHS["hook"]), nullable=True),
    Column("hook_instance", String(_LENGTHS["hook_instance"]), nullable=True),
    Column("patient_id", String(_LENGTHS["patient_id"]), nullable=True),
    Column("user_id", String(_LENGTHS["user_id"]), nullable=True),
    Column("outcome", Integer(), nullable=False),
    Column("cards", Integer(), nullable=False),
    Column("duration_ms", Float(), nullable=False),
    Column("detail", String(_LENGTHS["detail"]), nullable=True),
    Column("rule_outcomes", Text(), nullable=True),
    Index("ix_cds_audit_at", "at"),
    Index("ix_cds_audit_patient_at", "patient_id", "at"),
    Index("ix_cds_audit_tenant_at", "tenant", "at"),
)

issued_table = issued_cards_table(audit_metadata)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited call.

    `at` is when the call was received; it is normalised to UTC (a naive value is taken to be UTC
    already). `outcome` is the HTTP status answered. `cards` is the number of cards returned, or
    for feedback the number of items newly stored. `detail` is a short machine reason such as
    ``"412 prefetch"`` or ``"401 aud"`` and must never hold free text taken from the request.
    `rule_outcomes` lists the rules of a rule service's hook call that did not stay silent.
    """

    at: datetime
    kind: AuditKind
    tenant: str | None
    issuer: str | None
    service: str | None
    hook: str | None
    hook_instance: str | None
    patient_id: str | None
    user_id: str | None
    outcome: int
    cards: int
    duration_ms: float
    detail: str | None = None
    rule_outcomes: tuple[RuleStatus, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown audit kind {self.kind!r}")
        object.__setattr__(self, "at", utc(self.at))


def _fit(name: str, value: str | None) -> str | None:
    return storable(value, _LENGTHS[name])


def _row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": entry.at,
        "kind": entry.kind,
        "tenant": _fit("tenant", entry.tenant),
        "issuer": _fit("issuer", entry.issuer),
        "service": _fit("service", entry.service),
        "hook": _fit("hook", entry.hook),
        "hook_instance": _fit("hook_instance", entry.hook_instance),
        "patient_id": _fit("patient_id", entry.patient_id),
        "user_id": _fit("user_id", entry.user_id),
        "outcome": int(entry.outcome),
        "cards": int(entry.cards),
        "duration_ms": float(entry.duration_ms),
        "detail": _fit("detail", entry.detail),
        "rule_outcomes": _outcomes_json(entry.rule_outcomes),
    }


def _outcomes_json(outcomes: tuple[RuleStatus, ...]) -> str | None:
    if not outcomes:
        return None
    listed = [{"rule": o.rule_id, "version": o.rule_version, "status": o.status} for o in outcomes]
    return json.dumps(listed, separators=(",", ":"))


def rule_outcomes(text: str | None) -> tuple[RuleStatus, ...]:
    """The `rule_outcomes` column read back."""
    if not text:
        return ()
    return tuple(RuleStatus(o["rule"], o["version"], o["status"]) for o in json.loads(text))


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        at=row["at"],
        kind=cast(AuditKind, row["kind"]),
        tenant=row["tenant"],
        issuer=row["issuer"],
        service=row["service"],
        hook=row["hook"],
        hook_instance=row["hook_instance"],
        patient_id=row["patient_id"],
        user_id=row["user_id"],
        outcome=row["outcome"],
        cards=row["cards"],
        duration_ms=row["duration_ms"],
        detail=row["detail"],
        rule_outcomes=rule_outcomes(row["rule_outcomes"]),
    )


# One transaction holds at most this many rows (a burst is written in several).
MAX_ROWS_PER_TRANSACTION = 500

_COLUMNS = tuple(column.name for column in audit_table.columns if column.name != "id")
_ISSUED_COLUMNS = tuple(column.name for column in issued_table.columns)


def _pg_type(column: Column[Any]) -> str:
    """The type a column's values are read from the JSON as.

    Strings are read as `text`, not as the column's `varchar(n)`: the INSERT's own assignment
    then refuses a longer value rather than a cast cutting it silently."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "timestamptz"
    if isinstance(kind, String):  # Text too
        return "text"
    if isinstance(kind, Integer):
        return "int8" if isinstance(kind, BigInteger) else "int4"
    if isinstance(kind, Float):
        return "float8"
    raise TypeError(f"no type to read column {column.name} ({kind!r}) from JSON")


def _insert_from_json(table: Table, columns: tuple[str, ...], parameter: int) -> str:
    """INSERT of the rows given as one JSON array of objects (parameter $`parameter`), in the
    array's order (so ids are assigned in the order the rows were recorded)."""
    names = ", ".join(columns)
    typed = ", ".join(f"{name} {_pg_type(table.c[name])}" for name in columns)
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {names} "
        f"FROM ROWS FROM (jsonb_to_recordset(${parameter}::jsonb) AS ({typed})) "
        f"WITH ORDINALITY AS given({names}, position) ORDER BY position"
    )


# One statement writes a batch's audit rows ($1) and the cards its calls issued ($2): atomic by
# itself (no BEGIN and COMMIT round trips), one round trip however many rows and cards. Each
# table's rows go as one JSON text, which costs the client far less than a parameter per column
# or an array per column (asyncpg encodes arrays element by element).
_PG_INSERT = (
    f"WITH audit AS ({_insert_from_json(audit_table, _COLUMNS, 1)}) "
    f"{_insert_from_json(issued_table, _ISSUED_COLUMNS, 2)} "
    "ON CONFLICT (card_uuid) DO NOTHING"
)
_SQLITE_INSERT_ISSUED = sqlite.insert(issued_table).on_conflict_do_nothing(
    index_elements=[issued_table.c.card_uuid]
)

# A pending write: the audit row, the rows of the cards its call issued, and its caller's future.
_Pending = tuple[dict[str, Any], list[dict[str, Any]], "asyncio.Future[None]"]


# What a pooled connection the server closed raises, depending on when the client notices:
# before the call (closed, does not exist), in its middle (the protocol is mid-message: internal
# client error), or as the server's reason (administrator shutdown, 57P01).
_CONNECTION_LOST = (
    DBAPIError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """How the audit pool resets a connection it takes back: not at all, beyond what asyncpg
    always does (an unfinished transaction rolled back). asyncpg's default reset costs a round
    trip per write (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) to undo
    session state that this pool never makes: it only runs `_PG_INSERT`."""


class AuditStore:
    """Audit rows in SQLite or PostgreSQL. Open with `await AuditStore.open(url)`."""

    def __init__(self, engine: AsyncEngine, pg_writes: asyncpg.Pool | None = None) -> None:
        self._engine = engine
        # On PostgreSQL rows are appended over asyncpg directly: through SQLAlchemy's async
        # layer an INSERT cost 0.64 ms of CPU, straight through asyncpg 0.27 ms.
        self._pg_writes = pg_writes
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self.transactions = 0  # written so far (group commit puts many rows in one)

    @classmethod
    async def open(cls, database_url: str) -> AuditStore:
        """Connect, creating ``cds_audit``, ``cds_issued_cards`` and their indexes if missing.

        Raises ConfigurationError for a URL that is neither SQLite nor PostgreSQL.
        """
        url = async_database_url(database_url)
        engine = create_engine_for(url)
        try:
            await create_schema(engine, audit_metadata)
        except BaseException:
            await engine.dispose()
            raise
        pg_writes = None
        if engine.dialect.name == "postgresql":
            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
            try:
                pg_writes = await asyncpg.create_pool(
                    dsn, min_size=1, max_size=2, reset=_keep_session
                )
            except BaseException:
                await engine.dispose()
                raise
        log.info("audit store open (%s)", engine.dialect.name)
        return cls(engine, pg_writes)

    async def close(self) -> None:
        """Write the rows still pending, then close every pooled connection."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._pg_writes is not None:
            await self._pg_writes.close()
        await self._engine.dispose()

    async def record(self, entry: AuditEntry, issued: Sequence[IssuedCard] = ()) -> None:
        """Append one row, and the cards its call issued, in one transaction; return once it is
        committed (raise if it failed).

        A caller that is cancelled while waiting does not withdraw its row: it is still written.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((_row(entry), [issued_row(card) for card in issued], done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        await asyncio.shield(done)

    async def _write_pending(self) -> None:
        while self._pending:
            batch = self._pending[:MAX_ROWS_PER_TRANSACTION]
            del self._pending[:MAX_ROWS_PER_TRANSACTION]
            failure: Exception | None = None
            try:
                await self._insert(
                    [row for row, _, _ in batch], [card for _, cards, _ in batch for card in cards]
                )
            except Exception as exc:
                failure = exc
            for _, _, done in batch:
                if done.done():  # its caller is gone
                    continue
                if failure is None:
                    done.set_result(None)
                else:
                    done.set_exception(failure)

    async def _insert(self, rows: list[dict[str, Any]], cards: list[dict[str, Any]]) -> None:
        # A pooled connection the database has closed (a restart, an idle timeout) fails the
        # first attempt without writing anything (the transaction is rolled back), and the pool
        # replaces it: write the rows once more.
        for attempt in (1, 2):
            try:
                if self._pg_writes is not None:
                    await self._insert_pg(rows, cards)
                else:
                    async with self._engine.begin() as conn:
                        await conn.execute(audit_table.insert(), rows)
                        if cards:
                            await conn.execute(_SQLITE_INSERT_ISSUED, cards)
            except _CONNECTION_LOST as exc:
                refused = isinstance(exc, DBAPIError) and not exc.connection_invalidated
                if attempt == 2 or refused:
                    raise
            else:
                self.transactions += 1
                return

    async def _insert_pg(self, rows: list[dict[str, Any]], cards: list[dict[str, Any]]) -> None:
        assert self._pg_writes is not None
        await self._pg_writes.execute(
            _PG_INSERT, orjson.dumps(rows).decode(), orjson.dumps(cards).decode()
        )

    async def issued_cards(
        self, card_uuids: Collection[str], *, service: str, tenant: str | None
    ) -> dict[str, IssuedCard]:
        """The cards among `card_uuids` that `service` issued to `tenant` (None: without
        authentication), by uuid; a uuid it never issued to that tenant is absent."""
        if not card_uuids:
            return {}
        stmt = issued_query(issued_table, card_uuids, service=service, tenant=tenant)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return {row["card_uuid"]: issued_card(row) for row in rows}

    async def query(
        self,
        *,
        since: datetime | None,
        until: datetime | None = None,
        patient: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        """Rows with ``since <= at < until`` (either bound optional), newest first.

        `patient` and `tenant` match exactly. At most `limit` rows (at least 1) are returned: the
        newest ones. Rows with the same `at` come in reverse order of insertion.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        t = audit_table
        stmt = select(t)
        if since is not None:
            stmt = stmt.where(t.c.at >= utc(since))
        if until is not None:
            stmt = stmt.where(t.c.at < utc(until))
        if patient is not None:
            stmt = stmt.where(t.c.patient_id == patient)
        if tenant is not None:
            stmt = stmt.where(t.c.tenant == tenant)
        stmt = stmt.order_by(t.c.at.desc(), t.c.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_entry(r) for r in rows]

    async def rule_counts(self, window: Window) -> tuple[list[KeyCount], list[KeyStatus]]:
        """Over `window`: cards issued per (service, rule, version), and each audited rule
        outcome as ((service, rule, version), status), for `audit.summary.summarize`."""
        outcomes: list[KeyStatus] = []
        async with self._engine.connect() as conn:
            issued = [
                ((row.service, row.rule_id, row.rule_version), int(row.n))
                for row in await conn.execute(issued_counts(issued_table, window))
            ]
            result = await conn.stream(audited_outcomes(audit_table, window))
            async for service, text in result:
                outcomes += [
                    ((service or "-", o.rule_id, o.rule_version), o.status)
                    for o in rule_outcomes(text)
                ]
        return issued, outcomes

    async def call_counts(self, window: Window) -> dict[tuple[str, str], tuple[int, int]]:
        """Over `window`: hook calls answered 200 and those with a card, by (service, hook)."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(call_counts(audit_table, window))).all()
        return {(r.service or "-", r.hook or "-"): (int(r.n), int(r.carded or 0)) for r in rows}

    async def issued_times(self, window: Window, rule_id: str) -> list[datetime]:
        """When each card of `rule_id` was issued in `window`, oldest first."""
        async with self._engine.connect() as conn:
            result = await conn.execute(issued_times(issued_table, window, rule_id))
            return [utc(row[0]) for row in result]
