"""SMART App Launch through our routes, against the simulated EHR: the whole hand-off from a
card's link to the clinician view, and every refused flow."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from cds_service.clock import system_clock
from cds_service.config import Settings
from cds_service.main import create_app
from tests.conftest import FIXTURES
from tests.smart.simulator import Simulator

BASE = "https://cds.example.org"
EHR = "https://ehr.test"
DARWIN = (
    FIXTURES / "fhir-r4" / "synthea" / "Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json"
)
SCOPES = (
    "launch openid fhirUser online_access patient/Patient.rs patient/Observation.rs "
    "patient/Condition.rs patient/MedicationRequest.rs"
)


@dataclass
class World:
    sim: Simulator
    client: TestClient

    def browser(self, url: str) -> httpx.Response:
        """The browser following our redirect to the EHR's authorization page."""

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.sim.app)
            async with httpx.AsyncClient(transport=transport) as ehr:
                return await ehr.get(url)

        return asyncio.run(go())

    def launch(self, **params: str) -> httpx.Response:
        response: httpx.Response = self.client.get(
            "/smart/launch", params=params, follow_redirects=False
        )
        return response

    def authorize(self, launch_response: httpx.Response) -> dict[str, str]:
        assert launch_response.status_code == 302, launch_response.text
        back = self.browser(launch_response.headers["location"])
        assert back.status_code == 302, back.text
        location = back.headers["location"]
        assert location.startswith(f"{BASE}/smart/callback?")
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def callback(self, params: dict[str, str]) -> httpx.Response:
        response: httpx.Response = self.client.get(
            "/smart/callback", params=params, follow_redirects=False
        )
        return response


def tenants_file(path: Path, sim: Simulator, **smart: Any) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "tenants": [
                    {
                        "id": "ehr-test",
                        "issuer": EHR,
                        "jwks_url": f"{EHR}/jwks.json",
                        "fhir_servers": [sim.fhir_base],
                        "smart": {
                            "client_id": "cds-service-app",
                            "scopes": SCOPES,
                            "frame_ancestors": [EHR],
                            **smart,
                        },
                    }
                ]
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def darwin() -> dict[str, Any]:
    """The patient record the simulated EHR serves (read once; the simulator only reads it)."""
    bundle: dict[str, Any] = json.loads(DARWIN.read_text())
    return bundle


@pytest.fixture
def world(tmp_path: Path, darwin: dict[str, Any]) -> Iterator[Callable[..., World]]:
    clients: list[TestClient] = []

    def build(*, write_back: bool = False, at: datetime | None = None, **sim_options: Any) -> World:
        sim = Simulator(
            base_url=f"{EHR}/sim",
            bundle=darwin,
            redirect_uris=[f"{BASE}/smart/callback"],
            **sim_options,
        )
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/cds.db",
            tenants_file=tenants_file(tmp_path / "tenants.yaml", sim, write_back=write_back),
            public_base_url=BASE,
        )
        app = create_app(
            settings,
            fhir_transport=httpx.ASGITransport(app=sim.app),
            clock=system_clock if at is None else (lambda: at),
        )
        client = TestClient(app, base_url=BASE)
        client.__enter__()
        clients.append(client)
        return World(sim, client)

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def patient_id(world: World) -> str:
    assert world.sim.patient_id is not None
    return world.sim.patient_id


def test_ehr_launch_to_the_clinician_view(world: Callable[..., World]) -> None:
    w = world()
    launch = w.sim.launch_id(
        patient=patient_id(w), app_context=json.dumps({"rule": "statin-for-ascvd-risk"})
    )
    started = w.launch(iss=w.sim.fhir_base, launch=launch)
    cookie = started.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "samesite=lax" in cookie.lower()
    query = parse_qs(urlsplit(started.headers["location"]).query)
    assert query["aud"] == [w.sim.fhir_base] and query["launch"] == [launch]
    assert query["code_challenge_method"] == ["S256"] and "launch" in query["scope"][0].split()
    signed_in = w.callback(w.authorize(started))
    assert signed_in.status_code == 303 and signed_in.headers["location"] == f"{BASE}/smart/app"
    page = w.client.get("/smart/app")
    assert page.status_code == 200
    html = page.text
    assert "Darwin" in html and "McLaughlin" in html  # the banner
    assert "ASCVD" in html or "ascvd" in html.lower()
    assert "<svg" in html and "HbA1c" in html
    assert "Statin" in html or "statin" in html  # what the card pointed to
    token_call = next(r for r in w.sim.requests if r.path == "/auth/token")
    assert (
        token_call.form["code_verifier"] and token_call.form["grant_type"] == "authorization_code"
    )
    # Tokens stay on the server: never in the page, the URL or the cookie.
    for request in w.sim.requests:
        if request.path.startswith("/fhir/Patient"):
            token = request.headers["authorization"].removeprefix("Bearer ")
            assert token not in html and token not in cookie
    # Framed by the EHR only.
    assert f"frame-ancestors {EHR}" in page.headers["content-security-policy"]
    assert "x-frame-options" not in page.headers


def test_standalone_launch(world: Callable[..., World]) -> None:
    w = world()
    started = w.launch(iss=w.sim.fhir_base)
    scope = parse_qs(urlsplit(started.headers["location"]).query)["scope"][0].split()
    assert "launch/patient" in scope and "launch" not in scope
    assert w.callback(w.authorize(started)).status_code == 303
    assert "McLaughlin" in w.client.get("/smart/app").text


def test_chooser_lists_the_configured_ehrs(world: Callable[..., World]) -> None:
    w = world()
    page = w.client.get("/smart/launch")
    assert page.status_code == 200 and w.sim.fhir_base in page.text


def test_v1_scopes_for_a_v1_server(world: Callable[..., World]) -> None:
    w = world(scopes_v2=False)
    started = w.launch(iss=w.sim.fhir_base, launch=w.sim.launch_id(patient=patient_id(w)))
    scope = parse_qs(urlsplit(started.headers["location"]).query)["scope"][0]
    assert "patient/Observation.read" in scope and ".rs" not in scope
    assert w.callback(w.authorize(started)).status_code == 303


def test_unknown_iss_is_refused_without_redirect(world: Callable[..., World]) -> None:
    w = world()
    response = w.launch(iss="https://evil.example.net/fhir", launch="x")
    assert response.status_code == 400 and "location" not in response.headers
    assert "not one we are registered with" in response.text


def test_state_mismatch_and_reuse(world: Callable[..., World]) -> None:
    w = world()
    params = w.authorize(
        w.launch(iss=w.sim.fhir_base, launch=w.sim.launch_id(patient=patient_id(w)))
    )
    forged = w.callback({**params, "state": "forged"})
    assert forged.status_code == 400 and "state does not match" in forged.text
    # The session was spent by the failed attempt: the real state no longer works either.
    assert w.callback(params).status_code == 400
    # A successful sign-in cannot be replayed.
    params = w.authorize(
        w.launch(iss=w.sim.fhir_base, launch=w.sim.launch_id(patient=patient_id(w)))
    )
    assert w.callback(params).status_code == 303
    assert w.callback(params).status_code == 400


def test_wrong_pkce_verifier_is_refused_by_the_ehr(world: Callable[..., World]) -> None:
    w = world()
    started = w.launch(iss=w.sim.fhir_base, launch=w.sim.launch_id(patient=patient_id(w)))
    params = w.authorize(started)
    sessions = w.client.app.state.smart.sessions  # type: ignore[attr-defined]
    session_id = w.client.cookies.get("cds_smart_session")
    session = asyncio.run(sessions.get(session_id))
    asyncio.run(sessions.put(session_id, {**session, "verifier": "not-the-verifier" * 4}))
    response = w.callback(params)
    assert response.status_code == 400 and "invalid_grant" in response.text
    assert "Relaunch" in response.text or "relaunch" in response.text


def test_authorization_error_from_the_ehr(world: Callable[..., World]) -> None:
    w = world()
    started = w.launch(iss=w.sim.fhir_base, launch="no-such-launch")
    params = w.authorize(started)
    assert "error" in params
    response = w.callback(params)
    assert response.status_code == 400 and "refused the authorization" in response.text


def test_expired_session(world: Callable[..., World]) -> None:
    w = world()
    assert (
        w.callback(
            w.authorize(
                w.launch(iss=w.sim.fhir_base, launch=w.sim.launch_id(patient=patient_id(w)))
            )
        ).status_code
        == 303
    )
    sessions = w.client.app.state.smart.sessions  # type: ignore[attr-defined]
    later = sessions._clock() + sessions.idle_seconds + 1
    sessions._clock = lambda: later
    page = w.client.get("/smart/app")
    assert page.status_code == 401 and "session has ended" in page.text


def test_no_session_at_all(world: Callable[..., World]) -> None:
    w = world()
    page = w.client.get("/smart/app")
    assert page.status_code == 401 and "Traceback" not in page.text


def test_expired_access_token_is_refreshed(world: Callable[..., World]) -> None:
    w = world()
    assert (
        w.callback(
            w.authorize(
                w.launch(iss=w.sim.fhir_base, launch=w.sim.launch_id(patient=patient_id(w)))
            )
        ).status_code
        == 303
    )
    w.sim.expire_tokens()
    page = w.client.get("/smart/app")
    assert page.status_code == 200 and "McLaughlin" in page.text
    grants = [r.form.get("grant_type") for r in w.sim.requests if r.path == "/auth/token"]
    assert grants.count("refresh_token") == 1


def test_a_chart_write_after_the_token_expired_refreshes_it(world: Callable[..., World]) -> None:
    """The save and the view share one token provider: an expired access token is refreshed
    (once) before the record is read and the RiskAssessment written."""
    record = [e["resource"] for e in json.loads(DARWIN.read_text())["entry"]]
    last = max(
        (r for r in record if r["resourceType"] == "Encounter"), key=lambda r: r["period"]["start"]
    )
    w = world(write_back=True, at=datetime.fromisoformat(last["period"]["start"]))
    launched = w.launch(iss=w.sim.fhir_base, launch=w.sim.launch_id(patient=patient_id(w)))
    assert w.callback(w.authorize(launched)).status_code == 303
    assert w.client.get("/smart/app").status_code == 200
    sessions = w.client.app.state.smart.sessions  # type: ignore[attr-defined]
    session = asyncio.run(sessions.get(w.client.cookies.get("cds_smart_session")))
    w.sim.expire_tokens()
    saved = w.client.post(
        "/smart/save",
        data={"score": "ascvd", "csrf": session["csrf"]},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    grants = [r.form.get("grant_type") for r in w.sim.requests if r.path == "/auth/token"]
    assert grants.count("refresh_token") == 1
    page = w.client.get("/smart/app").text
    assert w.sim.created, page[page.find('class="notice') : page.find('class="notice') + 400]
    [created] = w.sim.created
    assert created["resourceType"] == "RiskAssessment"
    assert "Saved" in page  # the notice, shown once


def test_logout_revokes_and_ends_the_session(world: Callable[..., World]) -> None:
    w = world()
    assert (
        w.callback(
            w.authorize(
                w.launch(iss=w.sim.fhir_base, launch=w.sim.launch_id(patient=patient_id(w)))
            )
        ).status_code
        == 303
    )
    out = w.client.post("/smart/logout")
    assert out.status_code == 200 and "Signed out" in out.text
    assert "Error code" not in out.text  # signing out is no error
    assert len(w.sim.revoked) == 2
    assert w.client.get("/smart/app").status_code == 401


def test_banner_hidden_when_the_ehr_shows_its_own(world: Callable[..., World]) -> None:
    w = world()
    launch = w.sim.launch_id(patient=patient_id(w), need_patient_banner=False)
    assert w.callback(w.authorize(w.launch(iss=w.sim.fhir_base, launch=launch))).status_code == 303
    assert "McLaughlin" not in w.client.get("/smart/app").text


def test_fallback_to_the_capability_statement(world: Callable[..., World]) -> None:
    w = world(omit_smart_configuration=True)
    started = w.launch(iss=w.sim.fhir_base, launch=w.sim.launch_id(patient=patient_id(w)))
    assert started.status_code == 302
    assert started.headers["location"].startswith(w.sim.authorize_endpoint)


def test_a_server_without_an_authorization_endpoint_cannot_launch(
    world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world()
    document = w.sim.smart_configuration()
    del document["authorization_endpoint"]  # a Backend Services-only server
    monkeypatch.setattr(w.sim, "smart_configuration", lambda: document)
    started = w.launch(iss=w.sim.fhir_base, launch=w.sim.launch_id(patient=patient_id(w)))
    assert started.status_code == 502
    assert "no authorization endpoint" in started.text


def test_an_encounter_the_token_cannot_read_is_said_so(world: Callable[..., World]) -> None:
    """These scopes have no patient/Encounter.rs: the view still opens, and says the
    encounter could not be read rather than leaving it out silently."""
    w = world()
    visit = "0300b36e-1d11-48fe-8c52-5fed7a582a51"  # Darwin's last office visit
    launch = w.sim.launch_id(patient=patient_id(w), encounter=visit)
    assert w.callback(w.authorize(w.launch(iss=w.sim.fhir_base, launch=launch))).status_code == 303
    page = w.client.get("/smart/app")
    assert page.status_code == 200
    assert "Encounter: The encounter could not be read (HTTP 403)" in page.text
    assert any(r.path.startswith("/fhir/Encounter/") for r in w.sim.requests)


class _Failing(httpx.AsyncBaseTransport):
    """The EHR's FHIR server failing two ways: Condition searches answer 500 with an
    OperationOutcome, vital-sign searches time out; everything else reaches the simulator."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/fhir/Condition"):
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception", "diagnostics": "db down"}],
            }
            return httpx.Response(500, json=outcome)
        if "category=vital-signs" in str(request.url):
            raise httpx.ReadTimeout("slow", request=request)
        return await self.inner.handle_async_request(request)


def test_a_failing_fhir_server_gives_a_view_that_says_what_is_missing(
    tmp_path: Path, darwin: dict[str, Any]
) -> None:
    sim = Simulator(base_url=f"{EHR}/sim", bundle=darwin, redirect_uris=[f"{BASE}/smart/callback"])
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/cds.db",
        tenants_file=tenants_file(tmp_path / "tenants.yaml", sim),
        public_base_url=BASE,
    )
    transport = _Failing(httpx.ASGITransport(app=sim.app))
    with TestClient(create_app(settings, fhir_transport=transport), base_url=BASE) as client:
        w = World(sim, client)
        launch = sim.launch_id(patient=patient_id(w))
        signed_in = w.callback(w.authorize(w.launch(iss=sim.fhir_base, launch=launch)))
        assert signed_in.status_code == 303
        page = client.get("/smart/app")
    assert page.status_code == 200
    assert "Conditions could not be loaded (HTTP 500)" in page.text
    assert "Vitals could not be loaded (ReadTimeout)" in page.text
    assert "Traceback" not in page.text
    assert "Darwin" in page.text  # what could be read is still shown
    # Without the conditions, no score is ruled out on a diagnosis it could not see, nor
    # computed as if the diagnoses were absent: it is not computable, and says why.
    assert "no atrial fibrillation on record" not in page.text
    text = re.sub(r"<[^>]+>", " ", page.text)
    assert re.search(r"CHA2DS2-VASc stroke risk [^:]*Not computable: Conditions could", text)
    assert re.search(r"HAS-BLED major bleeding [^:]*Not computable: Conditions could", text)
    assert "not computable: not computable" not in text.lower()
    assert re.search(r"Atrial fibrillation\s+unknown: Conditions could not be loaded", text)
    assert not re.search(r"Atrial fibrillation\s+no\b", text)
