"""The SMART on FHIR EHR simulator behaves like a real authorization server and FHIR API.

Every flow is driven by hand over `httpx.ASGITransport`, as a SMART client would drive it; the
token response is compared with the one captured from the SMART App Launcher.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from deploy.topology import free_port
from tests.smart.simulator import FHIR_USER, OAUTH_URIS, Simulator, serve_in_thread

SHARED = Path(__file__).resolve().parents[3] / "shared"
BUNDLE = (
    SHARED
    / "fixtures"
    / "fhir-r4"
    / "synthea"
    / "Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json"
)
LAUNCHER = SHARED / "fixtures" / "smart" / "launcher"

BASE = "http://ehr.example/sim"
FHIR = f"{BASE}/fhir"
CLIENT_ID = "cds-service-app"
REDIRECT = "http://app.example/callback"
PATIENT = "429f802a-51cc-48c3-85d4-1a72bb718fc2"
ENCOUNTER = "0300b36e-1d11-48fe-8c52-5fed7a582a51"  # the bundle's latest encounter
OTHER_PATIENT = "1818afec-ef81-4c14-9ecf-0541f2ee9b22"
EHR_SCOPE = "launch openid fhirUser offline_access patient/*.rs"
T0 = 1_795_858_208.0  # the launcher capture's iat
T = TypeVar("T")


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(BUNDLE.read_text())
    return loaded


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_sim(bundle: dict[str, Any], clock: Clock) -> Callable[..., Simulator]:
    def make(**options: Any) -> Simulator:
        return Simulator(
            base_url=BASE, bundle=bundle, redirect_uris=[REDIRECT], now=clock, **options
        )

    return make


@pytest.fixture
def sim(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim()


def run(sim: Simulator, flow: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def main() -> T:
        transport = httpx.ASGITransport(app=sim.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ehr.example") as client:
            return await flow(client)

    return asyncio.run(main())


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def authorize(
    client: httpx.AsyncClient, challenge: str, **overrides: str | None
) -> httpx.Response:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": EHR_SCOPE,
        "state": "st-123",
        "aud": FHIR,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return await client.get(
        f"{BASE}/auth/authorize", params={k: v for k, v in params.items() if v is not None}
    )


def redirected(response: httpx.Response) -> dict[str, str]:
    """The query parameters of a redirect back to the app."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def token_request(
    client: httpx.AsyncClient, form: dict[str, str], **kwargs: Any
) -> httpx.Response:
    return await client.post(f"{BASE}/auth/token", data=form, **kwargs)


async def ehr_launch(
    client: httpx.AsyncClient, sim: Simulator, scope: str = EHR_SCOPE, **launch: Any
) -> dict[str, Any]:
    """A whole EHR launch: authorize with PKCE, then exchange the code; the token response."""
    launch_id = sim.launch_id(patient=PATIENT, **launch)
    verifier, challenge = pkce()
    code = redirected(await authorize(client, challenge, launch=launch_id, scope=scope))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
    }
    response = await token_request(client, form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- discovery --------------------------------------------------------------------------------


def test_smart_configuration_mirrors_the_launcher(sim: Simulator) -> None:
    launcher = json.loads((LAUNCHER / "smart-configuration.json").read_text())

    async def flow(client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.get(f"{FHIR}/.well-known/smart-configuration")
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]

    document = run(sim, flow)
    assert sim.fhir_base == FHIR
    assert document["issuer"] == FHIR
    assert document["authorization_endpoint"] == f"{BASE}/auth/authorize"
    assert document["token_endpoint"] == f"{BASE}/auth/token"
    assert document["revocation_endpoint"] == f"{BASE}/auth/revoke"
    assert document["jwks_uri"] == f"{BASE}/keys"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        document["token_endpoint_auth_methods_supported"]
    )
    assert {"launch", "launch/patient", "openid", "fhirUser", "offline_access"} <= set(
        document["scopes_supported"]
    )
    capabilities = set(document["capabilities"])
    assert capabilities <= set(launcher["capabilities"]) | {"permission-online"}
    assert {
        "launch-ehr",
        "launch-standalone",
        "client-public",
        "client-confidential-symmetric",
        "sso-openid-connect",
        "context-ehr-patient",
        "context-standalone-patient",
        "context-passthrough-banner",
        "context-passthrough-style",
        "permission-v2",
    } <= capabilities
    assert "permission-v1" not in capabilities
    assert set(document) - {"revocation_endpoint"} <= set(launcher)


def test_discovery_options(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(scopes_v2=False, offer_revocation=False, omit_smart_configuration=True)

    async def flow(client: httpx.AsyncClient) -> tuple[httpx.Response, ...]:
        return (
            await client.get(f"{FHIR}/.well-known/smart-configuration"),
            await client.get(f"{FHIR}/metadata"),
            await client.post(f"{BASE}/auth/revoke", data={"token": "x"}),
        )

    configuration, metadata, revoke = run(sim, flow)
    assert configuration.status_code == 404
    assert revoke.status_code == 404
    assert metadata.status_code == 200
    security = metadata.json()["rest"][0]["security"]
    (oauth,) = [e for e in security["extension"] if e["url"] == OAUTH_URIS]
    assert {e["url"]: e["valueUri"] for e in oauth["extension"]} == {
        "authorize": f"{BASE}/auth/authorize",
        "token": f"{BASE}/auth/token",
    }
    document = sim.smart_configuration()
    assert "permission-v1" in document["capabilities"]
    assert "permission-v2" not in document["capabilities"]
    assert "revocation_endpoint" not in document


def test_metadata_carries_the_oauth_uris(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get(f"{FHIR}/metadata")

    response = run(sim, flow)
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    (oauth,) = statement["rest"][0]["security"]["extension"]
    assert oauth["url"] == OAUTH_URIS
    assert {e["url"]: e["valueUri"] for e in oauth["extension"]} == {
        "authorize": f"{BASE}/auth/authorize",
        "token": f"{BASE}/auth/token",
        "revoke": f"{BASE}/auth/revoke",
    }


# -- the EHR launch ---------------------------------------------------------------------------


def test_a_whole_ehr_launch_by_hand(sim: Simulator) -> None:
    launcher = json.loads((LAUNCHER / "ehr-launch-exchange.json").read_text())

    async def flow(
        client: httpx.AsyncClient,
    ) -> tuple[dict[str, Any], httpx.Response, httpx.Response]:
        body = await ehr_launch(client, sim, encounter=ENCOUNTER)
        headers = bearer(body["access_token"])
        patient = await client.get(f"{FHIR}/Patient/{PATIENT}", headers=headers)
        observations = await client.get(
            f"{FHIR}/Observation", params={"patient": PATIENT, "code": "8302-2"}, headers=headers
        )
        return body, patient, observations

    body, patient, observations = run(sim, flow)
    # The launcher's token response, member for member (fhirUser only inside the id_token).
    assert set(body) == set(launcher["token_response"])
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == EHR_SCOPE
    assert body["patient"] == PATIENT
    assert body["encounter"] == ENCOUNTER
    assert body["need_patient_banner"] is True
    assert body["smart_style_url"] == f"{BASE}/smart-style.json"
    assert "fhirUser" not in body

    assert patient.status_code == 200
    assert patient.headers["content-type"].startswith("application/fhir+json")
    assert patient.json()["id"] == PATIENT
    searchset = observations.json()
    assert searchset["resourceType"] == "Bundle"
    assert searchset["type"] == "searchset"
    assert searchset["total"] > 0
    assert all(e["resource"]["code"]["coding"][0]["code"] == "8302-2" for e in searchset["entry"])
    assert searchset["entry"][0]["fullUrl"].startswith(f"{FHIR}/Observation/")

    token_call = next(r for r in sim.requests if r.path == "/auth/token")
    assert token_call.method == "POST"
    assert token_call.form["grant_type"] == "authorization_code"
    assert "code_verifier" in token_call.form
    authorize_call = next(r for r in sim.requests if r.path == "/auth/authorize")
    assert authorize_call.query["aud"] == FHIR
    assert [r.path for r in sim.requests][-2:] == [f"/fhir/Patient/{PATIENT}", "/fhir/Observation"]


def test_the_launch_context_is_passed_through(sim: Simulator) -> None:
    fhir_context = [{"reference": f"Encounter/{ENCOUNTER}"}]

    async def flow(client: httpx.AsyncClient) -> dict[str, Any]:
        return await ehr_launch(
            client,
            sim,
            scope="launch patient/*.read",
            app_context='{"card":"statin"}',
            need_patient_banner=False,
            fhir_context=fhir_context,
        )

    body = run(sim, flow)
    assert body["appContext"] == '{"card":"statin"}'
    assert body["fhirContext"] == fhir_context
    assert body["need_patient_banner"] is False
    assert "encounter" not in body
    assert "refresh_token" not in body  # neither offline_access nor online_access
    assert "id_token" not in body  # no openid


def test_every_search_type_is_served(sim: Simulator) -> None:
    types = [
        "Observation",
        "Condition",
        "MedicationRequest",
        "AllergyIntolerance",
        "Encounter",
        "Immunization",
    ]

    async def flow(client: httpx.AsyncClient) -> list[httpx.Response]:
        headers = bearer((await ehr_launch(client, sim))["access_token"])
        return [
            await client.get(f"{FHIR}/{t}", params={"patient": PATIENT}, headers=headers)
            for t in types
        ]

    totals = {t: r.json()["total"] for t, r in zip(types, run(sim, flow), strict=True)}
    assert totals["Observation"] == 223
    assert totals["AllergyIntolerance"] == 0
    assert totals["Encounter"] == 61
    assert all(totals[t] > 0 for t in types if t != "AllergyIntolerance")


def test_a_standalone_launch_picks_the_bundle_patient(sim: Simulator) -> None:
    scope = "launch/patient launch/encounter openid fhirUser patient/Patient.r"

    async def flow(client: httpx.AsyncClient) -> tuple[dict[str, Any], httpx.Response]:
        verifier, challenge = pkce()
        code = redirected(await authorize(client, challenge, scope=scope))["code"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        }
        body = (await token_request(client, form)).json()
        read = await client.get(f"{FHIR}/Patient/{PATIENT}", headers=bearer(body["access_token"]))
        return body, read

    body, read = run(sim, flow)
    assert body["patient"] == PATIENT
    assert body["encounter"] == ENCOUNTER
    assert body["scope"] == scope
    assert "id_token" in body
    assert read.status_code == 200


def test_the_id_token_verifies_with_the_jwks(sim: Simulator) -> None:
    launcher = json.loads((LAUNCHER / "ehr-launch-exchange.json").read_text())

    async def flow(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
        document = (await client.get(f"{FHIR}/.well-known/smart-configuration")).json()
        jwks = (await client.get(document["jwks_uri"])).json()
        return await ehr_launch(client, sim), jwks

    body, jwks = run(sim, flow)
    header = jwt.get_unverified_header(body["id_token"])
    assert header["alg"] == "RS256"
    (key,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert key["kty"] == "RSA"
    claims = jwt.decode(
        body["id_token"],
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=FHIR,
        options={"verify_exp": False, "verify_iat": False},  # checked below, on the sim clock
    )
    assert set(claims) == set(launcher["id_token_claims"])
    assert claims["fhirUser"] == FHIR_USER
    assert claims["iat"] == int(T0)
    assert claims["exp"] == int(T0) + 3600
    assert len(claims["sub"]) == 64
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            body["id_token"],
            jwt.PyJWK(key).key,
            algorithms=["RS256"],
            audience="someone-else",
            options={"verify_exp": False, "verify_iat": False},
        )


# -- refusals at the authorization endpoint ------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": "unknown-app"}, "unknown client_id"),
        ({"client_id": None}, "client_id is missing"),
        ({"redirect_uri": "http://evil.example/callback"}, "is not registered"),
        ({"redirect_uri": REDIRECT + "/"}, "is not registered"),
        ({"redirect_uri": None}, "redirect_uri is missing"),
    ],
)
def test_untrusted_clients_get_an_error_page_not_a_redirect(
    sim: Simulator, overrides: dict[str, str | None], message: str
) -> None:
    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        _, challenge = pkce()
        return await authorize(
            client, challenge, launch=sim.launch_id(patient=PATIENT), **overrides
        )

    response = run(sim, flow)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert message in response.text


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"aud": "http://ehr.example/other/fhir"}, "invalid_request", "is not this FHIR server"),
        ({"aud": None}, "invalid_request", "aud is required"),
        ({"code_challenge": None}, "invalid_request", "PKCE is required"),
        ({"code_challenge_method": "plain"}, "invalid_request", "must be S256"),
        ({"code_challenge_method": None}, "invalid_request", "must be S256"),
        ({"code_challenge": "too-short"}, "invalid_request", "base64url SHA-256"),
        ({"launch": "no-such-launch"}, "invalid_request", "unknown or expired launch"),
        ({"scope": "openid patient/*.rs"}, "invalid_scope", "needs the 'launch' scope"),
        ({"scope": None}, "invalid_scope", "scope is required"),
        ({"response_type": "token"}, "unsupported_response_type", "response_type=code"),
    ],
)
def test_bad_authorization_requests_are_redirected_with_an_error(
    sim: Simulator, overrides: dict[str, str | None], error: str, message: str
) -> None:
    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        _, challenge = pkce()
        params: dict[str, str | None] = {"launch": sim.launch_id(patient=PATIENT)}
        params.update(overrides)
        return await authorize(client, challenge, **params)

    answer = redirected(run(sim, flow))
    assert answer["error"] == error
    assert message in answer["error_description"]
    assert answer["state"] == "st-123"
    assert "code" not in answer


def test_a_missing_state_is_refused(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        _, challenge = pkce()
        return await authorize(client, challenge, launch=sim.launch_id(patient=PATIENT), state=None)

    answer = redirected(run(sim, flow))
    assert answer["error"] == "invalid_request"
    assert "state" not in answer


def test_a_v1_server_refuses_v2_scopes(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(scopes_v2=False)

    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        _, challenge = pkce()
        return await authorize(client, challenge, launch=sim.launch_id(patient=PATIENT))

    answer = redirected(run(sim, flow))
    assert answer["error"] == "invalid_scope"
    assert "patient/*.rs" in answer["error_description"]


# -- refusals at the token endpoint ------------------------------------------------------------


async def a_code(client: httpx.AsyncClient, sim: Simulator) -> tuple[str, str]:
    verifier, challenge = pkce()
    launch = sim.launch_id(patient=PATIENT)
    return redirected(await authorize(client, challenge, launch=launch))["code"], verifier


def code_form(code: str, verifier: str | None, /, **overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return form | overrides


def test_a_wrong_code_verifier_is_invalid_grant(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        code, _ = await a_code(client, sim)
        wrong, _ = pkce()
        return await token_request(client, code_form(code, wrong))

    response = run(sim, flow)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_grant"
    assert body["error_description"].startswith("Invalid grant or Invalid PKCE Verifier")
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("verifier", "overrides", "error", "message"),
    [
        (None, {}, "invalid_grant", "code_verifier is required"),
        ("short", {}, "invalid_grant", "malformed PKCE"),
        ("ok", {"redirect_uri": "http://app.example/other"}, "invalid_grant", "redirect_uri"),
        ("ok", {"client_id": "another-app"}, "invalid_grant", "another client"),
        ("ok", {"code": "forged"}, "invalid_grant", "unknown authorization code"),
        ("ok", {"grant_type": "password"}, "unsupported_grant_type", "password"),
    ],
)
def test_bad_token_requests_are_refused(
    sim: Simulator, verifier: str | None, overrides: dict[str, str], error: str, message: str
) -> None:
    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        code, good = await a_code(client, sim)
        return await token_request(
            client, code_form(code, good if verifier == "ok" else verifier, **overrides)
        )

    response = run(sim, flow)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert message in response.json()["error_description"]


def test_a_json_token_request_is_refused(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        code, verifier = await a_code(client, sim)
        return await client.post(f"{BASE}/auth/token", json=code_form(code, verifier))

    response = run(sim, flow)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_a_code_is_single_use_and_its_replay_revokes_the_tokens(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> tuple[httpx.Response, ...]:
        code, verifier = await a_code(client, sim)
        first = await token_request(client, code_form(code, verifier))
        replay = await token_request(client, code_form(code, verifier))
        read = await client.get(
            f"{FHIR}/Patient/{PATIENT}", headers=bearer(first.json()["access_token"])
        )
        refresh = await token_request(
            client,
            {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        )
        return first, replay, read, refresh

    first, replay, read, refresh = run(sim, flow)
    assert first.status_code == 200
    assert replay.status_code == 400
    assert replay.json() == {
        "error": "invalid_grant",
        "error_description": "authorization code already used",
    }
    assert read.status_code == 401
    assert refresh.json()["error"] == "invalid_grant"


def test_a_code_expires_after_60_seconds(sim: Simulator, clock: Clock) -> None:
    async def flow(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        code, verifier = await a_code(client, sim)
        clock.t += 60
        in_time = await token_request(client, code_form(code, verifier))
        code, verifier = await a_code(client, sim)
        clock.t += 61
        late = await token_request(client, code_form(code, verifier))
        return in_time, late

    in_time, late = run(sim, flow)
    assert in_time.status_code == 200
    assert late.status_code == 400
    assert late.json() == {
        "error": "invalid_grant",
        "error_description": "authorization code expired",
    }


def test_a_public_client_may_not_send_a_secret(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        code, verifier = await a_code(client, sim)
        return await token_request(client, code_form(code, verifier, client_secret="s3cret"))

    response = run(sim, flow)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


# -- confidential clients ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "secret", "status"),
    [
        ("basic", "s3cret", 200),
        ("post", "s3cret", 200),
        ("basic", "wrong", 401),
        ("post", "wrong", 401),
        ("none", "", 401),
    ],
)
def test_confidential_clients_authenticate(
    make_sim: Callable[..., Simulator], method: str, secret: str, status: int
) -> None:
    sim = make_sim(client_secret="s3cret")

    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        code, verifier = await a_code(client, sim)
        form = code_form(code, verifier)
        if method == "basic":
            del form["client_id"]
            return await token_request(client, form, auth=(CLIENT_ID, secret))
        if method == "post":
            form["client_secret"] = secret
        return await token_request(client, form)

    response = run(sim, flow)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")


def test_a_client_may_use_only_one_authentication_method(
    make_sim: Callable[..., Simulator],
) -> None:
    sim = make_sim(client_secret="s3cret")

    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        code, verifier = await a_code(client, sim)
        form = code_form(code, verifier, client_secret="s3cret")
        return await token_request(client, form, auth=(CLIENT_ID, "s3cret"))

    response = run(sim, flow)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# -- tokens at the FHIR API ---------------------------------------------------------------------


def test_the_fhir_api_needs_a_bearer_token(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        return (
            await client.get(f"{FHIR}/Patient/{PATIENT}"),
            await client.get(f"{FHIR}/Patient/{PATIENT}", headers=bearer("forged")),
        )

    missing, forged = run(sim, flow)
    assert missing.status_code == 401
    assert missing.json()["resourceType"] == "OperationOutcome"
    assert missing.headers["www-authenticate"] == f'Bearer realm="{FHIR}"'
    assert forged.status_code == 401
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]


def test_a_revoked_token_stops_working(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> tuple[dict[str, Any], list[httpx.Response]]:
        body = await ehr_launch(client, sim)
        url = f"{FHIR}/Patient/{PATIENT}"
        before = await client.get(url, headers=bearer(body["access_token"]))
        revoke = await client.post(f"{BASE}/auth/revoke", data={"token": body["access_token"]})
        after = await client.get(url, headers=bearer(body["access_token"]))
        return body, [before, revoke, after]

    body, (before, revoke, after) = run(sim, flow)
    assert before.status_code == 200
    assert revoke.status_code == 200
    assert after.status_code == 401
    assert "revoked" in after.json()["issue"][0]["diagnostics"]
    assert 'error="invalid_token"' in after.headers["www-authenticate"]
    assert sim.revoked == [body["access_token"]]


def test_revoking_the_refresh_token_ends_the_grant(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        body = await ehr_launch(client, sim)
        await client.post(f"{BASE}/auth/revoke", data={"token": body["refresh_token"]})
        refresh = await token_request(
            client, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
        )
        read = await client.get(f"{FHIR}/Patient/{PATIENT}", headers=bearer(body["access_token"]))
        return refresh, read

    refresh, read = run(sim, flow)
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
    assert read.status_code == 401


def test_tokens_expire_and_refresh(sim: Simulator, clock: Clock) -> None:
    launcher = json.loads((LAUNCHER / "ehr-launch-exchange.json").read_text())

    async def flow(client: httpx.AsyncClient) -> dict[str, Any]:
        body = await ehr_launch(client, sim, encounter=ENCOUNTER)
        url = f"{FHIR}/Patient/{PATIENT}"
        clock.t += 3599
        assert (await client.get(url, headers=bearer(body["access_token"]))).status_code == 200
        clock.t += 1
        expired = await client.get(url, headers=bearer(body["access_token"]))
        assert expired.status_code == 401
        assert expired.json()["issue"][0]["code"] == "expired"
        refresh = await token_request(
            client,
            {
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "client_id": CLIENT_ID,
            },
        )
        assert refresh.status_code == 200
        fresh: dict[str, Any] = refresh.json()
        assert fresh["access_token"] != body["access_token"]
        assert (await client.get(url, headers=bearer(fresh["access_token"]))).status_code == 200
        return fresh

    fresh = run(sim, flow)
    assert sorted(fresh) == launcher["refresh"]["keys"]
    assert fresh["patient"] == PATIENT
    assert fresh["scope"] == EHR_SCOPE


def test_expire_tokens_forces_a_refresh(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> tuple[int, int, int]:
        body = await ehr_launch(client, sim)
        url = f"{FHIR}/Patient/{PATIENT}"
        sim.expire_tokens()
        expired = await client.get(url, headers=bearer(body["access_token"]))
        form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
        fresh = (await token_request(client, form)).json()
        works = await client.get(url, headers=bearer(fresh["access_token"]))
        narrowed = await token_request(client, form | {"scope": "launch patient/*.rs"})
        widened = await token_request(client, form | {"scope": "user/*.rs"})
        assert narrowed.json()["scope"] == "launch patient/*.rs"
        return expired.status_code, works.status_code, widened.status_code

    assert run(sim, flow) == (401, 200, 400)


def test_only_the_launch_patient_is_served(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> list[httpx.Response]:
        headers = bearer((await ehr_launch(client, sim))["access_token"])
        return [
            await client.get(f"{FHIR}/Patient/{OTHER_PATIENT}", headers=headers),
            await client.get(f"{FHIR}/Condition?patient={OTHER_PATIENT}", headers=headers),
            await client.get(
                f"{FHIR}/Condition?patient={PATIENT},{OTHER_PATIENT}", headers=headers
            ),
            await client.get(f"{FHIR}/Condition", headers=headers),
            await client.get(f"{FHIR}/Condition?subject=Patient/{PATIENT}", headers=headers),
            await client.get(f"{FHIR}/Encounter/{ENCOUNTER}", headers=headers),
            await client.get(f"{FHIR}/Encounter/no-such-encounter", headers=headers),
            await client.get(f"{FHIR}/Claim?patient={PATIENT}", headers=headers),
        ]

    statuses = [r.status_code for r in run(sim, flow)]
    assert statuses == [403, 403, 403, 403, 200, 200, 404, 404]


def test_scopes_limit_what_may_be_read(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> list[httpx.Response]:
        body = await ehr_launch(client, sim, scope="launch patient/Observation.s")
        headers = bearer(body["access_token"])
        return [
            await client.get(f"{FHIR}/Observation?patient={PATIENT}", headers=headers),
            await client.get(f"{FHIR}/Condition?patient={PATIENT}", headers=headers),
            await client.get(f"{FHIR}/Patient/{PATIENT}", headers=headers),
        ]

    observation, condition, patient = run(sim, flow)
    assert observation.status_code == 200
    assert condition.status_code == 403
    assert 'error="insufficient_scope"' in condition.headers["www-authenticate"]
    assert patient.status_code == 403


def test_fhir_answers_are_delayed_by_the_latency(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(fhir_latency=0.05)

    async def flow(client: httpx.AsyncClient) -> float:
        headers = bearer((await ehr_launch(client, sim))["access_token"])
        started = time.monotonic()
        assert (await client.get(f"{FHIR}/Patient/{PATIENT}", headers=headers)).status_code == 200
        return time.monotonic() - started

    assert run(sim, flow) >= 0.05


def test_unknown_paths_are_recorded_404s(sim: Simulator) -> None:
    async def flow(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"{BASE}/nowhere?x=1", data={"a": "b"})

    assert run(sim, flow).status_code == 404
    (recorded,) = sim.requests
    assert (recorded.method, recorded.path, recorded.query, recorded.form) == (
        "POST",
        "/nowhere",
        {"x": "1"},
        {"a": "b"},
    )


# -- served over loopback -------------------------------------------------------------------------


def test_serve_in_thread_answers_over_loopback(bundle: dict[str, Any]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/v/r4"
    sim = Simulator(base_url=base, bundle=bundle, redirect_uris=[REDIRECT])
    stop = serve_in_thread(sim, port)
    try:
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            response = client.get(f"{base}/fhir/.well-known/smart-configuration")
    finally:
        stop()
    assert response.status_code == 200
    assert response.json()["issuer"] == f"{base}/fhir"
    assert response.json()["token_endpoint"] == f"{base}/auth/token"
    with httpx.Client(trust_env=False, timeout=2.0) as client, pytest.raises(httpx.ConnectError):
        client.get(f"{base}/fhir/metadata")
