"""The feedback store's overrides (what snoozes rules), on SQLite and PostgreSQL: the latest per
rule and coded reason, one tenant's, kept a few seconds per worker and forgotten when this worker
stores feedback for the patient."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from cds_service.feedback.overrides import StoredOverrides
from cds_service.feedback.store import CardRule, FeedbackStore
from cds_service.services.suppression import Override
from cds_service.wire.feedback import Feedback

SYSTEM = "urn:cds-service:override-reason"
RECEIVED = datetime(2026, 11, 28, 12, tzinfo=UTC)


def item(card: str, at: str, code: str | None = "patient-declined", **members: object) -> Feedback:
    body: dict[str, object] = {"card": card, "outcome": "overridden", "outcomeTimestamp": at}
    if code is not None:
        body["overrideReason"] = {"reason": {"code": code, "system": SYSTEM}}
    return Feedback.model_validate({**body, **members})


CARDS = {
    "c1": CardRule("pneumo", "1", "p1"),
    "c2": CardRule("pneumo", "2", "p1"),
    "c3": CardRule("statin", "1", "p1"),
    "c4": CardRule("pneumo", "1", "p2"),
}


def test_latest_override_per_rule_and_reason_of_one_tenant(database_url: str) -> None:
    async def body() -> None:
        store = await FeedbackStore.open(database_url)
        try:
            await store.record(
                "preventive-care",
                [
                    item("c1", "2026-01-01T00:00:00Z"),
                    item("c2", "2026-03-01T00:00:00Z"),  # a later version: same rule
                    item("c2", "2026-02-01T00:00:00Z", code="given-elsewhere"),
                    item("c3", "2026-04-01T00:00:00Z"),
                    item(
                        "c1", "2026-05-01T00:00:00Z", code=None, overrideReason={"userComment": "x"}
                    ),
                    item("c4", "2026-06-01T00:00:00Z"),
                    item("c1", "2026-07-01T00:00:00Z", code=None),
                ],
                received_at=RECEIVED,
                tenant="hospital-a",
                cards=CARDS,
            )
            await store.record(
                "preventive-care",
                [item("c1", "2026-08-01T00:00:00Z")],
                received_at=RECEIVED,
                tenant="hospital-b",
                cards=CARDS,
            )
            found = await store.overrides("hospital-a", "p1", ["pneumo"])
            assert sorted(found, key=lambda o: o.code) == [
                Override("pneumo", SYSTEM, "given-elsewhere", datetime(2026, 2, 1, tzinfo=UTC)),
                Override("pneumo", SYSTEM, "patient-declined", datetime(2026, 3, 1, tzinfo=UTC)),
            ]
            assert [o.rule_id for o in await store.overrides("hospital-a", "p1", ["statin"])] == [
                "statin"
            ]
            source = StoredOverrides(store, "hospital-b")
            assert [o.at.month for o in await source.overrides("p1", ["pneumo"])] == [8]
            assert await store.overrides(None, "p1", ["pneumo"]) == []
            assert await store.overrides("hospital-a", "p3", ["pneumo"]) == []
        finally:
            await store.close()

    asyncio.run(body())


def test_kept_briefly_and_forgotten_when_this_worker_stores_feedback(database_url: str) -> None:
    async def body() -> None:
        store = await FeedbackStore.open(database_url, cache_seconds=300)
        other_worker = await FeedbackStore.open(database_url)
        try:
            assert await store.overrides(None, "p1", ["pneumo"]) == []
            # Stored by another worker: not seen while this worker's answer is kept.
            await other_worker.record(
                "s", [item("c1", "2026-01-01T00:00:00Z")], received_at=RECEIVED, cards=CARDS
            )
            assert await store.overrides(None, "p1", ["pneumo"]) == []
            # Stored by this worker (for that patient): seen at once, with the other's too.
            await store.record(
                "s", [item("c2", "2026-02-01T00:00:00Z")], received_at=RECEIVED, cards=CARDS
            )
            found = await store.overrides(None, "p1", ["pneumo"])
            assert [o.at.month for o in found] == [2]
        finally:
            await other_worker.close()
            await store.close()

    asyncio.run(body())
