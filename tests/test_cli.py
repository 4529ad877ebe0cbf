"""The `cds-service` command: settings errors, the OpenAPI document, a real server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cds_service.cli import main, render_openapi, uvicorn_config
from cds_service.config import Settings
from deploy.topology import free_port
from tests.conformance import assert_conformant_response
from tests.conftest import load_fixture
from tests.serving import start_serve, wait_healthy

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"CDS_PORT": "eighty"}, ["serve"], "invalid setting CDS_PORT"),
        ({}, ["serve", "--port", "70000"], "invalid setting CDS_PORT"),
        ({}, ["serve", "--workers", "0"], "invalid setting CDS_WORKERS"),
        ({}, ["serve", "--rules", "/no/such/dir"], "invalid setting CDS_RULES_DIR"),
        ({"CDS_DATABASE_URL": "mysql://x"}, ["serve"], "invalid setting CDS_DATABASE_URL"),
        (
            {"CDS_PREFETCH_DEADLINE_SECONDS": "-1"},
            ["serve"],
            "invalid setting CDS_PREFETCH_DEADLINE_SECONDS",
        ),
        ({"CDS_ENV": "staging"}, ["serve"], "invalid setting CDS_ENV"),
    ],
)
def test_bad_settings_stop_start_up(
    env: dict[str, str],
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_committed_openapi_is_current() -> None:
    committed = (ROOT / "openapi" / "cds-service.openapi.json").read_text()
    assert committed == render_openapi(), "run `make openapi` and commit the result"


def test_openapi_describes_the_wire() -> None:
    doc = json.loads(render_openapi())
    hook = doc["paths"]["/cds-services/{service_id}"]["post"]
    assert hook["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/HookRequest"
    )
    assert set(hook["responses"]) == {"200", "400", "404", "412", "413", "415"}
    schemas = doc["components"]["schemas"]
    assert {"hookInstance", "fhirServer", "fhirAuthorization", "context", "prefetch"} <= set(
        schemas["HookRequest"]["properties"]
    )
    assert "selectionBehavior" in schemas["Card"]["properties"]


def test_openapi_check_flag(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    assert main(["openapi", "--output", str(target), "--check"]) == 1
    assert main(["openapi", "--output", str(target)]) == 0
    assert main(["openapi", "--output", str(target), "--check"]) == 0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`cds-service serve` in a subprocess, as an operator would start it."""
    port = free_port()
    process = start_serve(tmp_path, port, workers=2)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        yield base
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
        assert process.returncode == 0, output


def test_real_server_answers_discovery_hooks_and_feedback(server: str) -> None:
    services = httpx.get(f"{server}/cds-services").json()["services"]
    assert len({s["hook"] for s in services}) >= 10
    captured = load_fixture("cds-hooks/sandbox-client/captured-order-select.json")
    body = {**captured["body"], "hookInstance": str(uuid.uuid4())}
    # The captured fhirServer is a loopback port nobody listens on: fetches fail fast.
    response = httpx.post(f"{server}/cds-services/duplicate-therapy", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert_conformant_response(response.json())
    # Feedback on a card one worker issued, sent twice (stored once), through either worker.
    call = {
        "hook": "encounter-start",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "1288992", "encounterId": "e1"},
        "prefetch": {"patient": None, "allergies": None},
    }
    issued = httpx.post(f"{server}/cds-services/allergy-documentation", json=call, timeout=10)
    feedback = load_fixture("cds-hooks/spec-v2/index__26__feedback.json")
    feedback["feedback"][0]["card"] = issued.json()["cards"][0]["uuid"]
    for expected in (1, 0):
        answer = httpx.post(f"{server}/cds-services/allergy-documentation/feedback", json=feedback)
        assert answer.json() == {"received": 1, "stored": expected}
    assert httpx.get(f"{server}/readyz").json()["status"] == "ready"


@pytest.mark.parametrize(("level", "lines"), [("info", True), ("warning", False)])
def test_the_access_log_is_written_at_info_and_not_formatted_above(
    tmp_path: Path, level: str, lines: bool
) -> None:
    """At `info` each request has its access line; above it uvicorn is not asked to format
    lines its logger would drop (a cost on every request)."""
    assert uvicorn_config(Settings(log_level=level))["access_log"] is lines
    port = free_port()
    process = start_serve(tmp_path, port, workers=1, CDS_LOG_LEVEL=level)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        assert httpx.get(f"{base}/cds-services").status_code == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    access = [
        line
        for line in output.splitlines()
        if '"uvicorn.access"' in line and "GET /cds-services HTTP/1.1" in line
    ]
    assert bool(access) is lines, output
