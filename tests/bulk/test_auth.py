"""SMART Backend Services: discovery, the client assertion, the token request and its cache."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping

import httpx
import jwt
import pytest

from cds_service.bulk.auth import (
    AccessToken,
    TokenSource,
    build_client_assertion,
    discover,
    request_token,
    scopes_for_types,
)
from cds_service.bulk.errors import BulkError
from tests.bulk.fakes import (
    BASE,
    BULK_FIXTURES,
    CLIENT_ID,
    SCOPE,
    TOKEN_URL,
    FakeFhirServer,
    json_response,
    signing_key,
)

LAUNCHER = BULK_FIXTURES.parent / "smart" / "launcher" / "smart-configuration.json"


def test_discovery_reads_the_real_launcher_configuration() -> None:
    document = json.loads(LAUNCHER.read_text())
    base = document["issuer"]  # http://127.0.0.1:8445/v/r4/fhir

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == f"{base}/.well-known/smart-configuration"
        return json_response(200, document)

    async def run() -> str:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return (await discover(client, base + "/")).token_endpoint

    assert asyncio.run(run()) == "http://127.0.0.1:8445/v/r4/auth/token"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {
                "token_endpoint": TOKEN_URL,
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            },
            "private_key_jwt",
        ),
        (
            {"token_endpoint": TOKEN_URL, "grant_types_supported": ["authorization_code"]},
            "client_credentials",
        ),
        ({"authorization_endpoint": "https://auth.example.org/authorize"}, "no token_endpoint"),
    ],
)
def test_discovery_refuses_servers_without_backend_services(
    document: dict[str, object], message: str
) -> None:
    server = FakeFhirServer(signing_key(), smart_configuration=document)

    async def run() -> None:
        async with server.client() as client:
            await discover(client, BASE)

    with pytest.raises(BulkError, match=message):
        asyncio.run(run())


def test_without_the_well_known_document_the_capability_statement_names_the_endpoint() -> None:
    server = FakeFhirServer(signing_key(), well_known=False)

    async def run() -> str:
        async with server.client() as client:
            source = TokenSource(
                client, client_id=CLIENT_ID, key=signing_key(), scope=SCOPE, fhir_base=BASE
            )
            return await source.get()

    assert asyncio.run(run()) in server.issued
    assert [(r.method, str(r.url)) for r in server.requests] == [
        ("GET", f"{BASE}/.well-known/smart-configuration"),
        ("GET", f"{BASE}/metadata"),
        ("POST", TOKEN_URL),
    ]


def test_discovery_failures_are_bulk_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(404, {})

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await discover(client, BASE)

    with pytest.raises(BulkError, match=r"SMART discovery failed: .* no SMART configuration"):
        asyncio.run(run())


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_the_client_assertion_has_the_smart_header_and_claims(kind: str) -> None:
    key = signing_key(kind)
    now = time.time()
    assertion = build_client_assertion(key, CLIENT_ID, TOKEN_URL, now=now)
    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
    claims = jwt.decode(assertion, key.key.public_key(), algorithms=[key.alg], audience=TOKEN_URL)
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["exp"] - claims["iat"] == 300 and abs(claims["iat"] - now) < 1
    assert len(claims["jti"]) == 32
    other = jwt.decode(
        build_client_assertion(key, CLIENT_ID, TOKEN_URL),
        key.key.public_key(),
        algorithms=[key.alg],
        audience=TOKEN_URL,
    )
    assert other["jti"] != claims["jti"]
    with pytest.raises(ValueError, match="300"):
        build_client_assertion(key, CLIENT_ID, TOKEN_URL, lifetime=301)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_token_source_discovers_gets_and_caches_a_verified_token(kind: str) -> None:
    server = FakeFhirServer(signing_key(kind))

    async def run() -> tuple[str, str, str | None]:
        async with server.client() as client:
            source = TokenSource(
                client, client_id=CLIENT_ID, key=signing_key(kind), scope=SCOPE, fhir_base=BASE
            )
            first, second = await asyncio.gather(source.get(), source.get())
            assert first == second
            assert CLIENT_ID in repr(source) and first not in repr(source)
            return first, await source.get(), source.granted_scope

    first, again, scope = asyncio.run(run())
    assert first == again and first in server.issued
    assert scope == SCOPE
    # one discovery, one token request: the token was cached
    assert [(r.method, str(r.url)) for r in server.requests] == [
        ("GET", f"{BASE}/.well-known/smart-configuration"),
        ("POST", TOKEN_URL),
    ]
    post = server.requests[1]
    assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in post.headers


def test_the_token_is_renewed_shortly_before_it_expires() -> None:
    server = FakeFhirServer(signing_key())
    now = [time.time()]

    async def run() -> list[str]:
        async with server.client() as client:
            source = TokenSource(
                client,
                client_id=CLIENT_ID,
                key=signing_key(),
                scope=SCOPE,
                token_endpoint=TOKEN_URL,
                refresh_margin=60,
                clock=lambda: now[0],
            )
            tokens = [await source.get()]
            now[0] += 239  # expires_in 300, renewed 60 s before
            tokens.append(await source.get())
            now[0] += 2
            tokens.append(await source.get())
            source.invalidate()
            tokens.append(await source.get())
            return tokens

    tokens = asyncio.run(run())
    assert tokens[0] == tokens[1] != tokens[2] != tokens[3]
    assert len(server.assertions) == 3 and len(set(server.jtis)) == 3


def test_a_refused_token_request_raises_without_the_assertion() -> None:
    server = FakeFhirServer(signing_key())
    server.token_error = (401, {"error": "invalid_client", "error_description": "unknown client"})

    async def run() -> None:
        async with server.client() as client:
            source = TokenSource(
                client, client_id=CLIENT_ID, key=signing_key(), scope=SCOPE, fhir_base=BASE
            )
            await source.get()

    with pytest.raises(BulkError) as caught:
        asyncio.run(run())
    message = str(caught.value)
    assert "HTTP 401" in message and "invalid_client: unknown client" in message
    assert caught.value.server_status == 401
    (assertion,) = server.assertions
    assert assertion and assertion not in message
    assert assertion.split(".")[2] not in message


def test_an_echoed_assertion_is_scrubbed_from_the_error() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = dict(pair.split("=", 1) for pair in request.content.decode().split("&"))
        seen.append(form["client_assertion"])
        return json_response(
            400, {"error": "invalid_grant", "error_description": f"bad {form['client_assertion']}"}
        )

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await request_token(
                client, TOKEN_URL, client_id=CLIENT_ID, key=signing_key("ec"), scope=SCOPE
            )

    with pytest.raises(BulkError) as caught:
        asyncio.run(run())
    assert seen[0] not in str(caught.value) and "[client assertion]" in str(caught.value)


def test_network_errors_redirects_and_insecure_endpoints_raise_bulk_error() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def redirect(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "https://evil.example.net/token"})

    async def call(handler: object, endpoint: str = TOKEN_URL) -> AccessToken:
        transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport) as client:
            return await request_token(
                client, endpoint, client_id=CLIENT_ID, key=signing_key(), scope=SCOPE
            )

    with pytest.raises(BulkError, match="ConnectError"):
        asyncio.run(call(unreachable))
    with pytest.raises(BulkError, match="HTTP 307"):
        asyncio.run(call(redirect))
    with pytest.raises(BulkError, match="https"):
        asyncio.run(call(unreachable, "http://auth.example.org/token"))


def test_a_server_without_our_signing_algorithm_is_refused() -> None:
    server = FakeFhirServer(
        signing_key("ec"),
        smart_configuration={
            "token_endpoint": TOKEN_URL,
            "token_endpoint_auth_signing_alg_values_supported": ["RS384"],
        },
    )

    async def run() -> None:
        async with server.client() as client:
            await TokenSource(
                client, client_id=CLIENT_ID, key=signing_key("ec"), scope=SCOPE, fhir_base=BASE
            ).get()

    with pytest.raises(BulkError, match="ES384"):
        asyncio.run(run())


def test_token_response_is_checked_and_the_token_never_shown() -> None:
    bodies: list[dict[str, object]] = [
        {"token_type": "bearer"},
        {"access_token": "t", "token_type": "DPoP"},
    ]

    async def call(body: Mapping[str, object]) -> AccessToken:
        transport = httpx.MockTransport(lambda request: json_response(200, body))
        async with httpx.AsyncClient(transport=transport) as client:
            return await request_token(
                client, TOKEN_URL, client_id=CLIENT_ID, key=signing_key(), scope=SCOPE
            )

    for body in bodies:
        with pytest.raises(BulkError):
            asyncio.run(call(body))
    token = asyncio.run(call({"access_token": "very-secret", "token_type": "Bearer"}))
    assert token.expires_in == 300 and token.scope is None
    assert "very-secret" not in repr(token)


def test_scopes_for_types() -> None:
    assert (
        scopes_for_types(["Patient", "Observation", "Patient"])
        == "system/Patient.rs system/Observation.rs"
    )
    assert scopes_for_types(["Patient"], v1=True) == "system/Patient.read"
