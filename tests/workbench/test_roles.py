"""What each role sees of the workbench, signed in through OpenID Connect (the provider double
of test_auth): readers get the figures, rules and simulations, never the playground or a patient
id; authors get everything; nobody signed in gets nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from cds_service.main import create_app
from cds_service.workbench.simulations import SimulationStore, StoredSimulation
from tests.workbench.test_auth import (
    ANA,
    BASE,
    ROB,
    Account,
    Keys,
    Provider,
    settings_for,
    sign_in,
)
from tests.workbench.test_playground import FIRING, SYNTHEA_55

HTN = "hypertension-uncontrolled"


@pytest.fixture(scope="module")
def provider() -> Provider:
    return Provider(
        Keys(rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP256R1()))
    )


@pytest.fixture
def app_client(tmp_path: Path, provider: Provider) -> Iterator[TestClient]:
    settings = settings_for(
        tmp_path,
        rules_reload_seconds=0,
        workbench_population=SYNTHEA_55,
        workbench_workdir=tmp_path / "workbench",
    )
    app = create_app(settings, oidc_transport=httpx.MockTransport(provider.handle))
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:

        async def record() -> None:
            store = await SimulationStore.open(settings.database_url)
            try:
                await store.add(
                    [
                        StoredSimulation(
                            datetime.now(UTC),
                            HTN,
                            "2",
                            "preventive-care",
                            "patient-view",
                            "synthea-55-patients",
                            55,
                            55,
                            2,
                            2 / 55,
                            2 / 55,
                            {"fired": 2, "silent": 53},
                            [FIRING],
                            [],
                        )
                    ]
                )
            finally:
                await store.close()

        asyncio.run(record())
        yield client


def _csrf(client: TestClient) -> str:
    page: str = client.get("/workbench/rules").text
    token: str = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return token


def test_nobody_signed_in_gets_nothing(app_client: TestClient) -> None:
    assert app_client.get("/workbench/api/rules").status_code == 401
    page = app_client.get("/workbench/rules/hypertension-uncontrolled")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/workbench/login?next=")
    assert app_client.post("/workbench/api/playground/lint", json={"rule": "x"}).status_code == 401


def test_a_reader_sees_figures_and_simulations_but_no_patient(
    app_client: TestClient, provider: Provider
) -> None:
    assert sign_in(app_client, provider, Account("u-rob", ROB, name="Rob")).status_code == 303
    rules = app_client.get("/workbench/rules")
    assert rules.status_code == 200 and 'href="/workbench/playground"' not in rules.text
    detail = app_client.get(f"/workbench/api/rules/{HTN}").json()
    [simulation] = detail["simulations"]
    assert simulation["fired"] == 2 and simulation["examplePatients"] == []
    page = app_client.get(f"/workbench/rules/{HTN}").text
    assert FIRING not in page and "Open in playground" not in page
    assert "data-simulate-rule" not in page
    headers = {"X-CSRF-Token": _csrf(app_client)}
    assert app_client.get("/workbench/playground").status_code == 403
    assert app_client.get("/workbench/api/playground/patients").status_code == 403
    for path in ("lint", "evaluate", "simulate", "test"):
        answer = app_client.post(
            f"/workbench/api/playground/{path}", json={"rule": "x"}, headers=headers
        )
        assert answer.status_code == 403, path
    served = app_client.post(f"/workbench/api/rules/{HTN}/simulate", json={}, headers=headers)
    assert served.status_code == 403


def test_an_author_gets_the_playground_and_the_example_patients(
    app_client: TestClient, provider: Provider
) -> None:
    assert sign_in(app_client, provider, Account("u-ana", ANA, name="Ana")).status_code == 303
    detail = app_client.get(f"/workbench/api/rules/{HTN}").json()
    assert detail["simulations"][0]["examplePatients"] == [FIRING]
    assert app_client.get("/workbench/playground").status_code == 200
    headers = {"X-CSRF-Token": _csrf(app_client)}
    rule = (Path(__file__).parents[2] / "rules" / "patient-view" / f"{HTN}.yaml").read_text()
    answer = app_client.post(
        "/workbench/api/playground/evaluate",
        json={"rule": rule, "patient": FIRING},
        headers=headers,
    )
    assert answer.status_code == 200 and answer.json()["trace"]["status"] == "fired"
    missing = app_client.post("/workbench/api/playground/lint", json={"rule": rule})
    assert missing.status_code == 403  # no CSRF token
