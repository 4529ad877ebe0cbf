"""FeedbackStore on SQLite and PostgreSQL: round trips, idempotency, persistence."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from cds_service.feedback.store import FeedbackStore, RecordResult, StoredFeedback, feedback_id
from cds_service.wire.feedback import Feedback, FeedbackBatch

SPEC_DIR = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "cds-hooks" / "spec-v2"
RECEIVED = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
SERVICE = "example-service"


def run(body: Callable[[], Coroutine[Any, Any, object]]) -> None:
    asyncio.run(body())


def feedback(**members: Any) -> Feedback:
    body = {"card": "card-1", "outcome": "overridden", "outcomeTimestamp": "2021-12-11T10:05:31Z"}
    return Feedback.model_validate({**body, **members})


def spec_batch(name: str) -> list[Feedback]:
    data = json.loads((SPEC_DIR / name).read_text(encoding="utf-8"))
    return FeedbackBatch.model_validate(data).feedback


def assert_aware_utc(value: datetime) -> None:
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


def test_round_trip_with_aware_datetimes(database_url: str) -> None:
    item = feedback(
        card="card-rt",
        outcome="accepted",
        acceptedSuggestions=[{"id": "s-2"}, {"id": "s-1"}],
        # +02:00 in, UTC out.
        outcomeTimestamp="2021-12-11T12:05:31.250000+02:00",
        extension={"example.org/ext": {"n": 1}},
    )

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            local_received = RECEIVED.astimezone(timezone(timedelta(hours=-5)))
            result = await store.record(SERVICE, [item], received_at=local_received)
            assert result == RecordResult(received=1, stored=1)
            rows = await store.list_for_service(SERVICE)
            assert await store.list_for_service("another-service") == []
        finally:
            await store.close()
        assert rows == [
            StoredFeedback(
                id=feedback_id(SERVICE, item),
                service_id=SERVICE,
                card_uuid="card-rt",
                outcome="accepted",
                outcome_timestamp=datetime(2021, 12, 11, 10, 5, 31, 250000, tzinfo=UTC),
                accepted_suggestions=("s-1", "s-2"),
                override_reason_system=None,
                override_reason_code=None,
                override_reason_display=None,
                override_user_comment=None,
                extension={"example.org/ext": {"n": 1}},
                tenant=None,
                received_at=RECEIVED,
            )
        ]
        assert len(rows[0].id) == 64
        assert_aware_utc(rows[0].outcome_timestamp)
        assert_aware_utc(rows[0].received_at)

    run(body)


def test_same_batch_twice_is_stored_once(database_url: str) -> None:
    batch = [feedback(card="a"), feedback(card="b")]

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            first = await store.record(SERVICE, batch, received_at=RECEIVED)
            second = await store.record(SERVICE, batch, received_at=RECEIVED + timedelta(minutes=1))
            rows = await store.list_for_service(SERVICE)
        finally:
            await store.close()
        assert first == RecordResult(received=2, stored=2)
        assert second == RecordResult(received=2, stored=0)
        assert sorted(r.card_uuid for r in rows) == ["a", "b"]
        # The first arrival is kept.
        assert {r.received_at for r in rows} == {RECEIVED}

    run(body)


def test_duplicates_within_one_batch_count_once(database_url: str) -> None:
    same = feedback(card="dup")
    # Equivalent encodings of the same fact: another offset, suggestions in another order.
    a = feedback(
        card="acc",
        outcome="accepted",
        acceptedSuggestions=[{"id": "x"}, {"id": "y"}],
        outcomeTimestamp="2021-12-11T10:05:31Z",
    )
    b = feedback(
        card="acc",
        outcome="accepted",
        acceptedSuggestions=[{"id": "y"}, {"id": "x"}],
        outcomeTimestamp="2021-12-11T11:05:31+01:00",
    )
    assert feedback_id(SERVICE, a) == feedback_id(SERVICE, b)

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            result = await store.record(SERVICE, [same, same, a, b], received_at=RECEIVED)
            rows = await store.list_for_service(SERVICE)
        finally:
            await store.close()
        assert result == RecordResult(received=4, stored=2)
        assert sorted(r.card_uuid for r in rows) == ["acc", "dup"]

    run(body)


def test_several_cards_and_distinct_facts(database_url: str) -> None:
    batch = [
        feedback(card=f"card-{n}", outcomeTimestamp=f"2021-12-11T10:05:{n:02d}Z") for n in range(5)
    ]
    # The same card later accepted is a different fact, and so is the same feedback elsewhere.
    later = feedback(
        card="card-0",
        outcome="accepted",
        acceptedSuggestions=[{"id": "s"}],
        outcomeTimestamp="2021-12-11T10:06:00Z",
    )

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            assert await store.record(SERVICE, batch, received_at=RECEIVED) == RecordResult(5, 5)
            assert await store.record(SERVICE, [later], received_at=RECEIVED) == RecordResult(1, 1)
            assert await store.record("other", batch[:1], received_at=RECEIVED) == RecordResult(
                1, 1
            )
            rows = await store.list_for_service(SERVICE)
            others = await store.list_for_service("other")
        finally:
            await store.close()
        assert [(r.card_uuid, r.outcome) for r in rows] == [
            *((f"card-{n}", "overridden") for n in range(5)),
            ("card-0", "accepted"),
        ]
        assert [r.card_uuid for r in others] == ["card-0"]
        assert others[0].id != rows[0].id

    run(body)


def test_rows_carry_the_calling_tenant(database_url: str) -> None:
    item = feedback(card="card-t")

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            one = store.record(SERVICE, [item], received_at=RECEIVED, tenant="hospital-a")
            assert await one == RecordResult(1, 1)
            # The same fact from another EHR is its own row; a replay from either is not.
            two = store.record(SERVICE, [item], received_at=RECEIVED, tenant="hospital-b")
            assert await two == RecordResult(1, 1)
            again = store.record(SERVICE, [item], received_at=RECEIVED, tenant="hospital-a")
            assert await again == RecordResult(1, 0)
            # Without authentication there is no tenant: the key is the one it always was.
            assert await store.record(SERVICE, [item], received_at=RECEIVED) == RecordResult(1, 1)
            rows = await store.list_for_service(SERVICE)
        finally:
            await store.close()
        assert sorted((r.tenant or "", r.id) for r in rows) == sorted(
            [
                ("", feedback_id(SERVICE, item)),
                ("hospital-a", feedback_id(SERVICE, item, "hospital-a")),
                ("hospital-b", feedback_id(SERVICE, item, "hospital-b")),
            ]
        )

    run(body)


def test_large_batch_spans_several_statements(database_url: str) -> None:
    batch = [
        feedback(card=f"card-{n:04d}", outcomeTimestamp="2021-12-11T10:05:31Z") for n in range(1000)
    ]

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            first = await store.record(SERVICE, batch, received_at=RECEIVED)
            again = await store.record(SERVICE, batch[400:700], received_at=RECEIVED)
            rows = await store.list_for_service(SERVICE)
        finally:
            await store.close()
        assert first == RecordResult(received=1000, stored=1000)
        assert again == RecordResult(received=300, stored=0)
        assert len(rows) == 1000

    run(body)


def test_spec_example_accepted(database_url: str) -> None:
    items = spec_batch("index__24__feedback.json")

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            assert await store.record(SERVICE, items, received_at=RECEIVED) == RecordResult(1, 1)
            (row,) = await store.list_for_service(SERVICE)
        finally:
            await store.close()
        assert row.card_uuid == "4e0a3a1e-3283-4575-ab82-028d55fe2719"
        assert row.outcome == "accepted"
        assert row.accepted_suggestions == ("e56e1945-20b3-4393-8503-a1a20fd73152",)
        assert row.outcome_timestamp == datetime(2021, 12, 11, 10, 5, 31, tzinfo=UTC)
        assert_aware_utc(row.outcome_timestamp)
        assert row.override_reason_code is None
        assert row.override_user_comment is None
        assert row.extension is None

    run(body)


def test_spec_example_overridden_without_reason(database_url: str) -> None:
    items = spec_batch("index__25__feedback.json")

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            assert await store.record(SERVICE, items, received_at=RECEIVED) == RecordResult(1, 1)
            (row,) = await store.list_for_service(SERVICE)
        finally:
            await store.close()
        assert row.card_uuid == "f6b95768-b1c8-40dc-8385-bf3504b82ffb"
        assert row.outcome == "overridden"
        assert row.accepted_suggestions == ()
        assert row.outcome_timestamp == datetime(2020, 12, 11, tzinfo=UTC)
        assert (
            row.override_reason_system,
            row.override_reason_code,
            row.override_reason_display,
            row.override_user_comment,
        ) == (None, None, None, None)

    run(body)


def test_spec_example_overridden_with_reason_and_comment(database_url: str) -> None:
    items = spec_batch("index__26__feedback.json")

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            assert await store.record(SERVICE, items, received_at=RECEIVED) == RecordResult(1, 1)
            assert await store.record(SERVICE, items, received_at=RECEIVED) == RecordResult(1, 0)
            (row,) = await store.list_for_service(SERVICE)
        finally:
            await store.close()
        assert row.card_uuid == "9368d37b-283f-44a0-93ea-547cebab93ed"
        assert row.outcome == "overridden"
        assert row.override_reason_code == "d7ecf885"
        assert row.override_reason_system == "https://example.com/cds-hooks/override-reason-system"
        assert row.override_reason_display is None
        assert row.override_user_comment == "A comment entered by the clinician."
        assert row.outcome_timestamp == datetime(2020, 12, 11, tzinfo=UTC)

    run(body)


def test_overridden_with_user_comment_only(database_url: str) -> None:
    comment = "Patient declined — discussed risks. «ünïcödé» 'quotes' \"and\" more"
    item = feedback(card="c", overrideReason={"userComment": comment})
    other_comment = feedback(card="c", overrideReason={"userComment": comment + "!"})

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            result = await store.record(SERVICE, [item, other_comment], received_at=RECEIVED)
            rows = await store.list_for_service(SERVICE)
        finally:
            await store.close()
        assert result == RecordResult(2, 2)
        assert sorted(r.override_user_comment or "" for r in rows) == [comment, comment + "!"]
        assert all(r.override_reason_code is None for r in rows)

    run(body)


def test_empty_batch_stores_nothing(database_url: str) -> None:
    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            assert await store.record(SERVICE, [], received_at=RECEIVED) == RecordResult(0, 0)
            assert await store.list_for_service(SERVICE) == []
        finally:
            await store.close()

    run(body)


def test_ping(database_url: str) -> None:
    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            assert await store.ping() is True
        finally:
            await store.close()

    run(body)


def test_rows_survive_a_restart(database_url: str) -> None:
    item = feedback(card="persist", overrideReason={"userComment": "kept"})

    async def body() -> None:
        first = await FeedbackStore.open(database_url)
        try:
            await first.record(SERVICE, [item], received_at=RECEIVED)
        finally:
            await first.close()
        second = await FeedbackStore.open(database_url)
        try:
            rows = await second.list_for_service(SERVICE)
            again = await second.record(SERVICE, [item], received_at=RECEIVED)
        finally:
            await second.close()
        assert [(r.card_uuid, r.override_user_comment) for r in rows] == [("persist", "kept")]
        assert again == RecordResult(1, 0)

    run(body)


def test_two_open_stores_share_the_database(database_url: str) -> None:
    async def body() -> None:
        one = await FeedbackStore.open(database_url)
        two = await FeedbackStore.open(database_url)
        try:
            results = await asyncio.gather(
                one.record(SERVICE, [feedback(card="x"), feedback(card="y")], received_at=RECEIVED),
                two.record(SERVICE, [feedback(card="y"), feedback(card="z")], received_at=RECEIVED),
            )
            rows = await one.list_for_service(SERVICE)
        finally:
            await one.close()
            await two.close()
        assert sum(r.stored for r in results) == 3
        assert sorted(r.card_uuid for r in rows) == ["x", "y", "z"]

    run(body)


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "wal.db"

    async def body() -> None:
        store = await FeedbackStore.open(f"sqlite:///{path}")
        try:
            await store.record(SERVICE, [feedback()], received_at=RECEIVED)
        finally:
            await store.close()

    run(body)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_ping_false_when_database_unreachable() -> None:
    async def body() -> None:
        # Nothing listens on port 1; open() would fail, so build the store on a lazy engine.
        from sqlalchemy.ext.asyncio import create_async_engine

        store = FeedbackStore(create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/x"))
        try:
            assert await store.ping(timeout=5) is False
        finally:
            await store.close()

    run(body)


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url", "sqlite:/relative"])
def test_unknown_database_urls_are_configuration_errors(url: str) -> None:
    from cds_service.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError):
        run(lambda: FeedbackStore.open(url))


def test_a_batch_is_all_or_nothing(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cds_service.feedback import store as store_module

    # Three statements of two rows each; the second statement fails after the first succeeded.
    monkeypatch.setattr(store_module, "_CHUNK", 2)
    real_insert = FeedbackStore._insert
    calls = 0

    async def failing_insert(self: FeedbackStore, conn: Any, values: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("simulated failure mid-batch")
        return await real_insert(self, conn, values)

    batch = [feedback(card=f"card-{n}") for n in range(6)]

    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            with monkeypatch.context() as patch:
                patch.setattr(FeedbackStore, "_insert", failing_insert)
                with pytest.raises(RuntimeError, match="simulated"):
                    await store.record(SERVICE, batch, received_at=RECEIVED)
            assert await store.list_for_service(SERVICE) == []
            assert await store.record(SERVICE, batch, received_at=RECEIVED) == RecordResult(6, 6)
        finally:
            await store.close()

    run(body)
