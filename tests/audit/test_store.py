"""AuditStore on SQLite and PostgreSQL: round trips, filters, UTC, sharing the feedback database."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from cds_service.audit import AuditEntry, AuditStore
from cds_service.audit.issued import IssuedCard
from cds_service.audit.store import RuleStatus
from cds_service.exceptions import ConfigurationError
from cds_service.feedback.store import FeedbackStore, RecordResult
from cds_service.wire.feedback import Feedback

T0 = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)


def run(body: Callable[[], Coroutine[Any, Any, object]]) -> None:
    asyncio.run(body())


def entry(**fields: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "at": T0,
        "kind": "hook",
        "tenant": "hospital-a",
        "issuer": "https://ehr.hospital-a.example.org",
        "service": "cms-drug-interactions",
        "hook": "order-select",
        "hook_instance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "patient_id": "example-patient",
        "user_id": "Practitioner/example",
        "outcome": 200,
        "cards": 2,
        "duration_ms": 12.5,
        "detail": None,
    }
    values.update(fields)
    return AuditEntry(**values)


def assert_aware_utc(value: datetime) -> None:
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


async def _filled(url: str, entries: list[AuditEntry]) -> AuditStore:
    store = await AuditStore.open(url)
    for e in entries:
        await store.record(e)
    return store


def test_round_trip_with_aware_utc_datetimes(audit_url: str) -> None:
    # +02:00 in, UTC out.
    local = T0.astimezone(timezone(timedelta(hours=2)))
    written = [
        entry(at=local, detail="412 prefetch", outcome=412, cards=0),
        entry(
            at=T0 + timedelta(seconds=1),
            kind="feedback",
            hook=None,
            hook_instance=None,
            patient_id=None,
            user_id=None,
            cards=3,
            duration_ms=0.25,
        ),
        entry(
            at=T0 + timedelta(seconds=2),
            kind="discovery",
            tenant=None,
            issuer=None,
            service=None,
            hook=None,
            hook_instance=None,
            patient_id=None,
            user_id=None,
            cards=0,
        ),
    ]

    async def body() -> list[AuditEntry]:
        store = await _filled(audit_url, written)
        try:
            return await store.query(since=None)
        finally:
            await store.close()

    rows = asyncio.run(body())
    assert rows == list(reversed(written))
    for row in rows:
        assert_aware_utc(row.at)
        assert row.at.tzinfo is UTC
    assert rows[-1].at == T0  # microseconds kept
    assert rows[-1].detail == "412 prefetch"
    assert isinstance(rows[0].outcome, int)
    assert isinstance(rows[0].duration_ms, float)


def test_sqlite_reads_back_aware_utc(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    # A naive value is taken to be UTC; an aware one is converted.
    naive = datetime(2026, 1, 2, 3, 4, 5)
    eastern = datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone(timedelta(hours=-5)))

    async def body() -> list[AuditEntry]:
        store = await _filled(f"sqlite:///{path}", [entry(at=naive), entry(at=eastern)])
        try:
            return await store.query(since=datetime(2026, 1, 1, tzinfo=UTC))
        finally:
            await store.close()

    rows = asyncio.run(body())
    assert [r.at for r in rows] == [
        datetime(2026, 1, 2, 8, 4, 6, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    ]
    for row in rows:
        assert_aware_utc(row.at)
    conn = sqlite3.connect(path)
    try:
        stored = [r[0] for r in conn.execute("SELECT at FROM cds_audit ORDER BY id")]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    # Stored as UTC text, so text order is time order.
    assert stored == ["2026-01-02 03:04:05.000000", "2026-01-02 08:04:06.000000"]


def test_filters_and_newest_first(audit_url: str) -> None:
    written = [
        entry(at=T0 + timedelta(minutes=n), patient_id=patient, tenant=tenant, cards=n)
        for n, (patient, tenant) in enumerate(
            [
                ("p1", "hospital-a"),
                ("p2", "hospital-a"),
                ("p1", "hospital-b"),
                ("p2", "hospital-b"),
                ("p1", "hospital-a"),
                ("p1", None),
            ]
        )
    ]

    async def body() -> None:
        store = await _filled(audit_url, written)
        try:

            async def cards(**kwargs: Any) -> list[int]:
                kwargs.setdefault("since", None)
                return [r.cards for r in await store.query(**kwargs)]

            assert await cards() == [5, 4, 3, 2, 1, 0]
            # since is inclusive, until exclusive.
            assert await cards(since=T0 + timedelta(minutes=2)) == [5, 4, 3, 2]
            assert await cards(since=None, until=T0 + timedelta(minutes=2)) == [1, 0]
            assert await cards(
                since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=4)
            ) == [3, 2, 1]
            # Bounds in another offset mean the same instants.
            plus_one = timezone(timedelta(hours=1))
            assert await cards(since=(T0 + timedelta(minutes=4)).astimezone(plus_one)) == [5, 4]
            assert await cards(patient="p1") == [5, 4, 2, 0]
            assert await cards(tenant="hospital-b") == [3, 2]
            assert await cards(patient="p1", tenant="hospital-a") == [4, 0]
            assert await cards(patient="p1", tenant="hospital-a", since=T0 + timedelta(1)) == []
            assert await cards(patient="nobody") == []
            # limit keeps the newest.
            assert await cards(limit=2) == [5, 4]
            assert await cards(patient="p1", limit=3) == [5, 4, 2]
            with pytest.raises(ValueError, match="limit"):
                await store.query(since=None, limit=0)
        finally:
            await store.close()

    run(body)


def test_equal_times_come_newest_insert_first(audit_url: str) -> None:
    async def body() -> list[AuditEntry]:
        store = await _filled(audit_url, [entry(cards=n) for n in range(4)])
        try:
            return await store.query(since=T0, until=T0 + timedelta(microseconds=1), limit=3)
        finally:
            await store.close()

    assert [r.cards for r in asyncio.run(body())] == [3, 2, 1]


def test_shares_the_database_with_the_feedback_store(audit_url: str) -> None:
    item = Feedback.model_validate(
        {"card": "card-1", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T12:00:00Z"}
    )

    async def tables(store: AuditStore) -> set[str]:
        async with store._engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        return set(names) & {"cds_audit", "cds_feedback"}

    async def body() -> None:
        # The audit store opens first and creates only its own table.
        audit = await AuditStore.open(audit_url)
        try:
            assert await tables(audit) == {"cds_audit"}
            await audit.record(entry(kind="feedback", cards=1))
            feedback = await FeedbackStore.open(audit_url)
            try:
                assert await tables(audit) == {"cds_audit", "cds_feedback"}
                stored = await feedback.record("svc", [item], received_at=T0)
                assert stored == RecordResult(1, 1)
                await audit.record(entry(at=T0 + timedelta(seconds=1)))
                assert len(await feedback.list_for_service("svc")) == 1
            finally:
                await feedback.close()
            assert [r.kind for r in await audit.query(since=None)] == ["hook", "feedback"]
        finally:
            await audit.close()
        # Opened again, in the other order, both find their rows.
        feedback = await FeedbackStore.open(audit_url)
        audit = await AuditStore.open(audit_url)
        try:
            assert len(await feedback.list_for_service("svc")) == 1
            assert len(await audit.query(since=None)) == 2
        finally:
            await audit.close()
            await feedback.close()

    run(body)


def test_schema_has_the_indexes(audit_url: str) -> None:
    async def body() -> dict[str, list[str | None]]:
        store = await AuditStore.open(audit_url)
        try:
            async with store._engine.connect() as conn:
                indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("cds_audit"))
        finally:
            await store.close()
        return {i["name"]: list(i["column_names"]) for i in indexes if i["name"]}

    assert asyncio.run(body()) == {
        "ix_cds_audit_at": ["at"],
        "ix_cds_audit_patient_at": ["patient_id", "at"],
        "ix_cds_audit_tenant_at": ["tenant", "at"],
    }


def test_workers_racing_to_create_the_table(audit_url: str) -> None:
    async def body() -> None:
        stores = await asyncio.gather(*(AuditStore.open(audit_url) for _ in range(4)))
        try:
            await asyncio.gather(*(s.record(entry(cards=n)) for n, s in enumerate(stores)))
            rows = await stores[0].query(since=None)
        finally:
            for s in stores:
                await s.close()
        assert sorted(r.cards for r in rows) == [0, 1, 2, 3]

    run(body)


def test_rows_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'audit.db'}"

    async def body() -> None:
        first = await _filled(url, [entry()])
        await first.close()
        second = await AuditStore.open(url)
        try:
            assert await second.query(since=None) == [entry()]
        finally:
            await second.close()

    run(body)


def test_in_memory_sqlite() -> None:
    async def body() -> None:
        store = await _filled("sqlite:///:memory:", [entry(), entry(cards=7)])
        try:
            assert [r.cards for r in await store.query(since=None)] == [7, 2]
        finally:
            await store.close()

    run(body)


def test_overlong_strings_are_cut_to_fit(audit_url: str) -> None:
    long = entry(patient_id="p" * 300, issuer="https://" + "i" * 2000, detail="d" * 200)

    async def body() -> list[AuditEntry]:
        store = await _filled(audit_url, [long])
        try:
            return await store.query(since=None)
        finally:
            await store.close()

    (row,) = asyncio.run(body())
    assert row.patient_id == "p" * 256
    assert row.issuer is not None and len(row.issuer) == 1024
    assert row.detail == "d" * 128


def test_a_nul_a_caller_sent_does_not_cost_the_row(audit_url: str) -> None:
    """A call is audited before its identifiers are checked (a NUL in a patient id answers 400,
    and that call is audited too): a NUL, which PostgreSQL's text cannot hold, is written as
    U+FFFD, on both backends, in the row and in its issued cards."""
    odd = entry(patient_id="p\x00q", user_id="\x00", hook_instance="h\x00" * 200)
    card = IssuedCard(
        card_uuid="card\x00",
        rule_id="r",
        rule_version="1",
        issued_at=T0,
        tenant="hospital-a",
        service="cms-drug-interactions",
        hook="order-select",
        hook_instance=None,
        patient_id="p\x00q",
    )

    async def body() -> tuple[list[AuditEntry], dict[str, IssuedCard]]:
        store = await AuditStore.open(audit_url)
        try:
            await store.record(odd, [card])
            found = await store.issued_cards(
                ["card\ufffd"], service="cms-drug-interactions", tenant="hospital-a"
            )
            return await store.query(since=None), found
        finally:
            await store.close()

    (row,), found = asyncio.run(body())
    assert row.patient_id == "p\ufffdq" and row.user_id == "\ufffd"
    assert row.hook_instance == ("h\ufffd" * 128)  # cut to 256 characters, then replaced
    assert found["card\ufffd"].patient_id == "p\ufffdq"


def test_entry_is_frozen_and_checked() -> None:
    e = entry(at=datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))))
    assert e.at == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert e.at.tzinfo is UTC
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.cards = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="kind"):
        entry(kind="login")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url"])
def test_unknown_database_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        run(lambda: AuditStore.open(url))


def test_concurrent_records_share_transactions_and_all_commit(audit_url: str) -> None:
    """Group commit: 200 calls recording at once take far fewer transactions than rows, every
    row is there when its caller returns, and insertion order is kept."""

    async def body() -> tuple[int, list[AuditEntry]]:
        store = await AuditStore.open(audit_url)
        try:
            await asyncio.gather(*(store.record(entry(cards=n)) for n in range(200)))
            rows = await store.query(since=T0, limit=1000)
            return store.transactions, rows
        finally:
            await store.close()

    transactions, rows = asyncio.run(body())
    assert len(rows) == 200
    assert [r.cards for r in rows] == list(range(199, -1, -1))  # newest insert first
    assert 1 <= transactions < 20


def test_a_failed_transaction_fails_its_callers_only(audit_url: str) -> None:
    async def body() -> tuple[list[BaseException | None], int]:
        store = await AuditStore.open(audit_url)
        try:
            good = entry(cards=1)
            bad = entry(cards=2)
            object.__setattr__(bad, "outcome", "not a number")  # the INSERT of this row fails
            first = await asyncio.gather(store.record(bad), return_exceptions=True)
            later = await asyncio.gather(store.record(good), return_exceptions=True)
            rows = await store.query(since=T0, limit=10)
            return [*first, *later], len(rows)
        finally:
            await store.close()

    results, stored = asyncio.run(body())
    assert isinstance(results[0], Exception) and results[1] is None
    assert stored == 1


def test_a_cancelled_caller_still_gets_its_row_written(audit_url: str) -> None:
    async def body() -> int:
        store = await AuditStore.open(audit_url)
        try:
            task = asyncio.create_task(store.record(entry(cards=7)))
            await asyncio.sleep(0)  # the row is queued
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            await store.close()  # waits for the pending write
        reopened = await AuditStore.open(audit_url)
        try:
            return len(await reopened.query(since=T0, limit=10))
        finally:
            await reopened.close()

    assert asyncio.run(body()) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_connection_the_database_closed_is_replaced_without_losing_the_row(
    audit_url: str,
) -> None:
    """Audit writes take no pre-ping round trip: when PostgreSQL has closed the pooled connection (a
    restart, an idle timeout), the write is retried once on a new connection."""

    async def body() -> int:
        store = await AuditStore.open(audit_url)
        try:
            await store.record(entry(cards=1))  # a pooled connection now exists
            admin = await asyncpg.connect(audit_url)
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await admin.close()
            assert killed >= 1
            await store.record(entry(cards=2))
            return len(await store.query(since=T0, limit=10))
        finally:
            await store.close()

    assert asyncio.run(body()) == 2


class _FlakyPool:
    """Stands in for asyncpg's pool: the first write fails as `first` says, the next succeed."""

    def __init__(self, first: BaseException) -> None:
        self.first: BaseException | None = first
        self.written: list[dict[str, Any]] = []  # the audit rows of the successful writes
        self.attempts = 0

    async def execute(self, sql: str, rows: str, cards: str) -> None:  # each as JSON
        self.attempts += 1
        if self.first is not None:
            failure, self.first = self.first, None
            raise failure
        self.written.extend(json.loads(rows))

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "failure",
    [
        asyncpg.exceptions.InternalClientError("cannot switch to state 13"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.InterfaceError("connection is closed"),
        ConnectionResetError(),
    ],
    ids=["mid-operation", "gone", "admin-shutdown", "closed", "reset"],
)
def test_a_write_on_a_lost_postgres_connection_is_retried_once(
    tmp_path: Path, failure: BaseException
) -> None:
    async def body() -> _FlakyPool:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/unused.db")
        pool = _FlakyPool(failure)
        store = AuditStore(engine, pg_writes=pool)
        try:
            await store.record(entry(cards=1))
        finally:
            await store.close()
        return pool

    pool = asyncio.run(body())
    assert pool.attempts == 2 and len(pool.written) == 1


def test_a_row_postgres_refuses_is_not_retried(tmp_path: Path) -> None:
    async def body() -> tuple[_FlakyPool, BaseException | None]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/unused.db")
        pool = _FlakyPool(asyncpg.exceptions.DataError("invalid input"))
        store = AuditStore(engine, pg_writes=pool)
        try:
            await store.record(entry(cards=1))
        except Exception as exc:
            return pool, exc
        finally:
            await store.close()
        return pool, None

    pool, raised = asyncio.run(body())
    assert isinstance(raised, asyncpg.exceptions.DataError)
    assert pool.attempts == 1 and pool.written == []


def test_rule_outcomes_round_trip(audit_url: str) -> None:
    outcomes = (
        RuleStatus("pneumococcal-vaccine-due", "2", "suppressed"),
        RuleStatus("new-rule", "1", "shadow"),
    )

    async def body() -> None:
        store = await _filled(audit_url, [entry(rule_outcomes=outcomes), entry(cards=0)])
        try:
            rows = await store.query(since=None)
        finally:
            await store.close()
        assert [r.rule_outcomes for r in rows] == [(), outcomes]

    run(body)
