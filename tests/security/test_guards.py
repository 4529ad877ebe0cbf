"""SSRF guard, security headers, rate limits and the audit trail, with authentication on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.audit.store import AuditEntry, AuditStore
from cds_service.cli import main
from cds_service.feedback.store import FeedbackStore, StoredFeedback
from tests.api.calls import issue_cards
from tests.security.conftest import FHIR, Keys, bearer, encounter_start, make_token

HOOK = "/cds-services/allergy-documentation"


def fhir_recorder() -> tuple[list[str], Callable[[httpx.Request], httpx.Response]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if "/Patient/" in request.url.path:
            return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})

    return seen, handler


@pytest.mark.parametrize(
    ("server", "fetched"),
    [
        (FHIR, True),
        (FHIR + "/", True),
        ("https://evil.example.net/fhir", False),
        ("https://fhir.hospital-a.example.org/r4-other", False),
        ("http://fhir.hospital-a.example.org/r4", False),  # not https in production
        ("http://169.254.169.254/latest", False),
    ],
)
def test_prefetch_only_from_the_tenants_fhir_servers(
    secure_app: Callable[..., TestClient], keys: Keys, server: str, fetched: bool
) -> None:
    seen, handler = fhir_recorder()
    body = encounter_start(fhirServer=server)
    del body["prefetch"]  # everything must be fetched
    with secure_app(fhir=handler) as client:
        response = client.post(HOOK, json=body, headers=bearer(make_token(keys, HOOK)))
    if fetched:
        assert response.status_code == 200, response.text
        assert seen and all(url.startswith(FHIR + "/") for url in seen)
    else:
        # The patient is required by this service: unobtainable data is a 412, never a fetch.
        assert response.status_code == 412, response.text
        assert seen == []


def test_a_refused_fhir_server_is_logged_only_when_a_fetch_was_needed(
    secure_app: Callable[..., TestClient], keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain-http fhirServer in production: warned about (and counted) on a call that needed
    a fetch; not on a call whose keys were all prefetched (nothing was refused)."""
    seen, handler = fhir_recorder()
    insecure = "http://fhir.hospital-a.example.org/r4"
    with secure_app(fhir=handler) as client:
        complete = encounter_start(fhirServer=insecure)
        caplog.clear()
        sent_all = client.post(HOOK, json=complete, headers=bearer(make_token(keys, HOOK)))
        quiet = [r for r in caplog.records if "not fetching prefetch" in r.getMessage()]
        lacking = encounter_start(fhirServer=insecure)
        del lacking["prefetch"]
        caplog.clear()
        refused = client.post(HOOK, json=lacking, headers=bearer(make_token(keys, HOOK)))
        warned = [r for r in caplog.records if "not fetching prefetch" in r.getMessage()]
        metrics = client.get("/metrics").text
    assert sent_all.status_code == 200, sent_all.text
    assert quiet == []
    assert refused.status_code == 412
    assert len(warned) == 1 and "fhirServer is not https" in warned[0].getMessage()
    assert 'cds_fetch_refusals_total{reason="fhirServer is not https"} 1.0' in metrics
    assert seen == []


def test_security_headers_on_every_response(client: TestClient, keys: Keys) -> None:
    responses = [
        client.get("/cds-services", headers=bearer(make_token(keys, "/cds-services"))),
        client.get("/cds-services"),  # 401
        client.get("/healthz"),
        client.get("/nowhere"),
        client.post(HOOK, json=encounter_start(), headers=bearer(make_token(keys, HOOK))),
    ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert "traceback" not in response.text.lower()


def test_rate_limit_per_tenant(secure_app: Callable[..., TestClient], keys: Keys) -> None:
    with secure_app(tenant={"rate_limit_per_minute": 2}) as client:
        statuses = [
            client.post(HOOK, json=encounter_start(), headers=bearer(make_token(keys, HOOK)))
            for _ in range(3)
        ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["retry-after"]) >= 1


def test_no_rate_limit_by_default(client: TestClient, keys: Keys) -> None:
    for _ in range(10):
        response = client.post(HOOK, json=encounter_start(), headers=bearer(make_token(keys, HOOK)))
        assert response.status_code == 200


def test_audit_trail_records_calls_and_feedback(
    secure_app: Callable[..., TestClient],
    keys: Keys,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = encounter_start()
    with secure_app() as client:
        hook = client.post(HOOK, json=body, headers=bearer(make_token(keys, HOOK)))
        assert hook.status_code == 200
        bad = encounter_start(context={"userId": "Practitioner/1"})
        assert (
            client.post(HOOK, json=bad, headers=bearer(make_token(keys, HOOK))).status_code == 400
        )
        path = HOOK + "/feedback"
        feedback = {
            "feedback": [
                {
                    "card": hook.json()["cards"][0]["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2030-03-17T17:46:40Z",
                }
            ]
        }
        assert (
            client.post(path, json=feedback, headers=bearer(make_token(keys, path))).status_code
            == 200
        )
        url = client.app.state.cds.settings.database_url  # type: ignore[attr-defined]

    async def read() -> list:  # type: ignore[type-arg]
        store = await AuditStore.open(url)
        try:
            return await store.query(since=datetime.now(UTC) - timedelta(minutes=5))
        finally:
            await store.close()

    feedback_entry, failed, ok = asyncio.run(read())
    assert (ok.kind, ok.tenant, ok.service, ok.hook, ok.outcome, ok.cards) == (
        "hook",
        "hospital-a",
        "allergy-documentation",
        "encounter-start",
        200,
        1,
    )
    assert ok.hook_instance == body["hookInstance"] and ok.patient_id == "p1"
    assert ok.user_id == "Practitioner/1" and ok.issuer and ok.duration_ms > 0
    assert (failed.outcome, failed.patient_id) == (400, None)
    assert (feedback_entry.kind, feedback_entry.cards, feedback_entry.outcome) == (
        "feedback",
        1,
        200,
    )

    monkeypatch.setenv("CDS_DATABASE_URL", url)
    assert main(["audit", "--since", "1h", "--patient", "p1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["kind"], r["hook_instance"]) for r in lines] == [("hook", body["hookInstance"])]


def test_discovery_is_audited(secure_app: Callable[..., TestClient], keys: Keys) -> None:
    with secure_app() as client:
        token = make_token(keys, "/cds-services")
        response = client.get("/cds-services", headers=bearer(token))
        url = client.app.state.cds.settings.database_url  # type: ignore[attr-defined]
    assert response.status_code == 200

    async def read() -> list[AuditEntry]:
        store = await AuditStore.open(url)
        try:
            return await store.query(since=datetime.now(UTC) - timedelta(minutes=5))
        finally:
            await store.close()

    [entry] = asyncio.run(read())
    assert (entry.kind, entry.tenant, entry.service, entry.hook, entry.outcome, entry.cards) == (
        "discovery",
        "hospital-a",
        None,
        None,
        200,
        0,
    )
    assert entry.issuer and entry.patient_id is None and entry.duration_ms > 0


def test_feedback_is_stored_with_the_calling_tenant(
    secure_app: Callable[..., TestClient], keys: Keys, database_url: str
) -> None:
    path = HOOK + "/feedback"
    with secure_app(database_url=database_url) as client:
        hook = client.post(HOOK, json=encounter_start(), headers=bearer(make_token(keys, HOOK)))
        item = {
            "card": hook.json()["cards"][0]["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": "2030-03-17T17:46:40Z",
        }
        feedback = {"feedback": [item]}
        response = client.post(path, json=feedback, headers=bearer(make_token(keys, path)))
    assert response.status_code == 200, response.text

    async def read() -> list[StoredFeedback]:
        store = await FeedbackStore.open(database_url)
        try:
            return await store.list_for_service("allergy-documentation")
        finally:
            await store.close()

    assert [(r.card_uuid, r.tenant) for r in asyncio.run(read())] == [(item["card"], "hospital-a")]


def test_feedback_on_another_tenants_card_is_refused(
    secure_app: Callable[..., TestClient], keys: Keys, database_url: str
) -> None:
    """A card is the tenant's it was issued to: another EHR (or an unauthenticated trial) cannot
    give feedback on it, even knowing its uuid."""
    issue_cards(database_url, "allergy-documentation", ["theirs"], tenant="hospital-b")
    issue_cards(database_url, "allergy-documentation", ["nobodys"], tenant=None)
    path = HOOK + "/feedback"
    with secure_app(database_url=database_url) as client:
        for card in ("theirs", "nobodys"):
            item = {
                "card": card,
                "outcome": "overridden",
                "outcomeTimestamp": "2030-03-17T17:46:40Z",
            }
            response = client.post(
                path, json={"feedback": [item]}, headers=bearer(make_token(keys, path))
            )
            assert response.status_code == 400, response.text
            assert "feedback[0].card" in response.text


def test_auth_required_needs_a_tenants_file(tmp_path: Path) -> None:
    from cds_service.config import Settings
    from cds_service.exceptions import ConfigurationError
    from cds_service.main import create_app

    with pytest.raises(ConfigurationError, match="CDS_TENANTS_FILE"):
        create_app(Settings(database_url=f"sqlite:///{tmp_path}/f.db", auth="required"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("tenants: []", "tenants"),
        ("tenants:\n  - id: a\n    issuer: x\n", "jwks_url or jwks"),
        (
            "tenants:\n  - id: a\n    issuer: x\n    jwks_url: https://x/j\n"
            "    algorithms: [HS256]\n",
            "algorithms",
        ),
        (
            "tenants:\n  - id: a\n    issuer: x\n    jwks_url: https://x/j\n    extra: 1\n",
            r":5:5: tenants\[0\]\.extra: is not a known key",
        ),
        ("tenants:\n  - issuer: x\n    jwks_url: https://x/j\n", r"tenants\[0\]\.id: is required"),
        ("tenants:\n  - id: a\n    id: b\n", "duplicate key"),
    ],
)
def test_bad_tenants_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    from cds_service.exceptions import ConfigurationError
    from cds_service.security.tenants import load_tenants

    path = tmp_path / "tenants.yaml"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message) as raised:
        load_tenants(path)
    assert str(path) in raised.value.message and ":" in raised.value.message
