"""Issued cards (`cds_issued_cards`): written with their call's audit row, looked up by uuid for
one service and tenant, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from cds_service.audit import AuditStore
from cds_service.audit.store import IssuedCard
from tests.audit.test_store import T0, entry


def card(uuid: str, **fields: object) -> IssuedCard:
    values: dict[str, object] = {
        "card_uuid": uuid,
        "rule_id": "pneumococcal-vaccine-due",
        "rule_version": "2",
        "issued_at": T0,
        "tenant": "hospital-a",
        "service": "preventive-care",
        "hook": "patient-view",
        "hook_instance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "patient_id": "example-patient",
    }
    values.update(fields)
    return IssuedCard(**values)  # type: ignore[arg-type]


def test_cards_are_written_with_the_audit_row_and_found_by_service_and_tenant(
    audit_url: str,
) -> None:
    first, second = card("card-1"), card("card-2", rule_id="statin-for-ascvd-risk")
    unauthenticated = card("card-3", tenant=None)

    async def body() -> None:
        store = await AuditStore.open(audit_url)
        try:
            await store.record(entry(cards=2), [first, second])
            await store.record(entry(tenant=None, cards=1), [unauthenticated])
            await store.record(entry(cards=0))
            found = await store.issued_cards(
                ["card-1", "card-2", "card-3", "never"],
                service="preventive-care",
                tenant="hospital-a",
            )
            assert found == {"card-1": first, "card-2": second}
            assert found["card-1"].issued_at.utcoffset() == timedelta(0)
            # Another tenant, another service or no tenant sees none of them.
            assert await store.issued_cards(["card-1"], service="preventive-care", tenant="b") == {}
            assert await store.issued_cards(["card-1"], service="other", tenant="hospital-a") == {}
            assert await store.issued_cards(
                ["card-1", "card-3"], service="preventive-care", tenant=None
            ) == {"card-3": unauthenticated}
            assert await store.issued_cards([], service="preventive-care", tenant=None) == {}
            assert len(await store.query(since=None)) == 3
        finally:
            await store.close()

    asyncio.run(body())


def test_a_repeated_uuid_does_not_fail_the_transaction(audit_url: str) -> None:
    async def body() -> None:
        store = await AuditStore.open(audit_url)
        try:
            await store.record(entry(), [card("card-1")])
            again = dataclasses.replace(card("card-1"), rule_id="another-rule")
            await asyncio.gather(store.record(entry(), [again]), store.record(entry(cards=5)))
            found = await store.issued_cards(
                ["card-1"], service="preventive-care", tenant="hospital-a"
            )
            assert found["card-1"].rule_id == "pneumococcal-vaccine-due"  # the first one stays
            assert len(await store.query(since=None)) == 3
        finally:
            await store.close()

    asyncio.run(body())


def test_overlong_strings_are_cut_to_fit(audit_url: str) -> None:
    async def body() -> None:
        store = await AuditStore.open(audit_url)
        try:
            await store.record(entry(), [card("card-1", rule_version="v" * 100)])
            found = await store.issued_cards(
                ["card-1"], service="preventive-care", tenant="hospital-a"
            )
            assert found["card-1"].rule_version == "v" * 64
        finally:
            await store.close()

    asyncio.run(body())
