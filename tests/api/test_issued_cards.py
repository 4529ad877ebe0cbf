"""Every card a hook call returns is recorded as issued, with the rule (id, version) that made it,
in the audit trail's database; shadow cards never are."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi.testclient import TestClient

from cds_service import __version__
from cds_service.audit.store import AuditEntry, AuditStore, IssuedCard, RuleStatus
from tests.api.test_rule_services import PATIENT, call, make_client, rules_dir, write_rule
from tests.conftest import FROZEN_NOW

__all__ = ["audit_rows", "issued", "rules_dir"]


def issued(client: TestClient, uuids: list[str], service: str) -> dict[str, IssuedCard]:
    """The cards among `uuids` the app recorded as issued by `service` (no authentication)."""
    url = client.app.state.cds.settings.database_url  # type: ignore[attr-defined]

    async def read() -> dict[str, IssuedCard]:
        store = await AuditStore.open(url)
        try:
            return await store.issued_cards(uuids, service=service, tenant=None)
        finally:
            await store.close()

    return asyncio.run(read())


def audit_rows(url: str) -> list[AuditEntry]:
    """Every audit row of the database, newest first."""

    async def read() -> list[AuditEntry]:
        store = await AuditStore.open(url)
        try:
            return await store.query(since=None)
        finally:
            await store.close()

    return asyncio.run(read())


def test_rule_cards_are_recorded_with_their_rule(tmp_path: Path, rules_dir: Path) -> None:
    write_rule(rules_dir, "live")
    write_rule(rules_dir, "shadowed", status="draft", summary="Shadow {{name}}")
    with make_client(tmp_path, rules_dir) as client:
        response = call(client, {"patient": PATIENT})
        [card] = response.json()["cards"]
        recorded = issued(client, [card["uuid"]], "test-service")
    assert recorded == {
        card["uuid"]: IssuedCard(
            card_uuid=card["uuid"],
            rule_id="live",
            rule_version="1",
            issued_at=FROZEN_NOW,
            tenant=None,
            service="test-service",
            hook="patient-view",
            hook_instance=recorded[card["uuid"]].hook_instance,
            patient_id="p1",
        )
    }


def test_shadow_cards_are_never_recorded(tmp_path: Path, rules_dir: Path) -> None:
    write_rule(rules_dir, "shadowed", status="draft", summary="Shadow {{name}}")
    with make_client(tmp_path, rules_dir) as client:
        assert call(client, {"patient": PATIENT}).json() == {"cards": []}
        url = client.app.state.cds.settings.database_url  # type: ignore[attr-defined]

    async def count() -> int:
        store = await AuditStore.open(url)
        try:
            async with store._engine.connect() as conn:
                rows = await conn.exec_driver_sql("SELECT count(*) FROM cds_issued_cards")
                return int(rows.scalar_one())
        finally:
            await store.close()

    assert asyncio.run(count()) == 0


def test_builtin_cards_are_recorded_as_the_service(client: TestClient) -> None:
    body = {
        "hook": "encounter-start",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "1288992", "encounterId": "e1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "1288992"},
            "allergies": {"resourceType": "Bundle", "type": "searchset"},
        },
    }
    [card] = client.post("/cds-services/allergy-documentation", json=body).json()["cards"]
    recorded = issued(client, [card["uuid"]], "allergy-documentation")[card["uuid"]]
    assert (recorded.rule_id, recorded.rule_version) == ("allergy-documentation", __version__)
    assert (recorded.hook, recorded.hook_instance, recorded.patient_id) == (
        "encounter-start",
        "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "1288992",
    )


def test_feedback_on_an_issued_card_is_stored_with_its_rule(
    tmp_path: Path, rules_dir: Path
) -> None:
    write_rule(rules_dir, "live")
    with make_client(tmp_path, rules_dir) as client:
        [card] = call(client, {"patient": PATIENT}).json()["cards"]
        item = {
            "card": card["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-28T10:00:00Z",
        }
        response = client.post("/cds-services/test-service/feedback", json={"feedback": [item]})
        assert response.json() == {"received": 1, "stored": 1}
        store = client.app.state.resources.feedback  # type: ignore[attr-defined]
        rows = client.portal.call(store.list_for_service, "test-service")  # type: ignore[union-attr]
    [row] = rows
    assert (row.rule_id, row.rule_version, row.patient_id, row.tenant) == ("live", "1", "p1", None)


def test_the_audit_row_lists_the_rules_that_did_not_stay_silent(
    tmp_path: Path, rules_dir: Path
) -> None:
    write_rule(rules_dir, "live")
    write_rule(rules_dir, "shadowed", status="draft", summary="Shadow {{name}}")
    write_rule(rules_dir, "quiet", condition="%name = 'nobody'")
    write_rule(rules_dir, "broken", condition="%patient.name.given.single().exists()")
    patient = {**PATIENT, "name": [{"given": ["Ada", "Augusta"]}]}
    with make_client(tmp_path, rules_dir) as client:
        assert call(client, {"patient": patient}).status_code == 200
        url = client.app.state.cds.settings.database_url  # type: ignore[attr-defined]

    [row] = audit_rows(url)
    assert sorted(row.rule_outcomes, key=lambda o: o.rule_id) == [
        RuleStatus("broken", "1", "error"),
        RuleStatus("live", "1", "fired"),
        RuleStatus("shadowed", "1", "shadow"),
    ]


def test_every_call_is_audited_with_its_outcome_even_when_it_fails(
    tmp_path: Path, rules_dir: Path
) -> None:
    """A refused call is audited too, with its status and the error's type (never its message);
    the answered call with 200: the row is written as the call ends, whatever way it ends."""
    write_rule(rules_dir, "live")
    with make_client(tmp_path, rules_dir) as client:
        assert call(client, {"patient": PATIENT}).status_code == 200
        bad = client.post("/cds-services/test-service", json={"hook": "patient-view"})
        assert bad.status_code == 400
        url = client.app.state.cds.settings.database_url  # type: ignore[attr-defined]
    rows = audit_rows(url)
    assert [(r.outcome, r.detail) for r in reversed(rows)] == [
        (200, None),
        (400, "RequestError"),
    ]
