"""The one SMART configuration client: the well-known document, else the CapabilityStatement."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cds_service.security.smart_discovery import (
    OAUTH_URIS,
    SmartConfiguration,
    SmartDiscovery,
    SmartError,
    fetch_smart_configuration,
)
from tests.conftest import FIXTURES

LAUNCHER = json.loads((FIXTURES / "smart" / "launcher" / "smart-configuration.json").read_text())
BASE = "https://ehr.example.org/fhir"
Handler = Callable[[httpx.Request], httpx.Response]


def capability_statement(**uris: str) -> dict[str, Any]:
    extension = [{"url": name, "valueUri": uri} for name, uri in uris.items()]
    return {
        "resourceType": "CapabilityStatement",
        "rest": [
            {
                "mode": "server",
                "security": {"extension": [{"url": OAUTH_URIS, "extension": extension}]},
            }
        ],
    }


def server(
    well_known: httpx.Response, metadata: httpx.Response | None = None
) -> tuple[list[str], Handler]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/.well-known/smart-configuration"):
            return well_known
        if request.url.path.endswith("/metadata") and metadata is not None:
            return metadata
        return httpx.Response(404)

    return seen, handler


def fetch(handler: Handler, base: str = BASE) -> SmartConfiguration:
    async def run() -> SmartConfiguration:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await fetch_smart_configuration(client, base)

    return asyncio.run(run())


def test_the_well_known_document_is_read() -> None:
    seen, handler = server(httpx.Response(200, json=LAUNCHER))
    config = fetch(handler, BASE + "/")
    assert seen == [f"{BASE}/.well-known/smart-configuration"]
    assert config.token_endpoint == LAUNCHER["token_endpoint"]
    assert config.authorization_endpoint == LAUNCHER["authorization_endpoint"]
    assert config.issuer == LAUNCHER["issuer"] and config.jwks_uri == LAUNCHER["jwks_uri"]
    assert config.code_challenge_methods == {"S256"}
    assert config.scopes_v2 and "launch-ehr" in config.capabilities
    assert config.grant_types == ("authorization_code", "client_credentials")
    assert config.token_auth_methods is not None
    assert "private_key_jwt" in config.token_auth_methods
    assert config.token_signing_algs is None  # not advertised


@pytest.mark.parametrize(
    "well_known",
    [
        httpx.Response(404),
        httpx.Response(200, text="<html>not here</html>"),
        # never followed: the endpoints must come from the FHIR server itself
        httpx.Response(302, headers={"Location": "https://elsewhere.example.net/config"}),
    ],
)
def test_the_capability_statement_is_the_fallback(well_known: httpx.Response) -> None:
    statement = capability_statement(
        authorize="https://ehr.example.org/auth/authorize",
        token="https://ehr.example.org/auth/token",
        revoke="https://ehr.example.org/auth/revoke",
    )
    seen, handler = server(well_known, httpx.Response(200, json=statement))
    config = fetch(handler)
    assert seen == [f"{BASE}/.well-known/smart-configuration", f"{BASE}/metadata"]
    assert config == SmartConfiguration(
        token_endpoint="https://ehr.example.org/auth/token",
        authorization_endpoint="https://ehr.example.org/auth/authorize",
        revocation_endpoint="https://ehr.example.org/auth/revoke",
    )


@pytest.mark.parametrize(
    ("well_known", "metadata", "message"),
    [
        (httpx.Response(404), httpx.Response(404), "answered HTTP 404, metadata HTTP 404"),
        (
            httpx.Response(404),
            httpx.Response(200, json=capability_statement(authorize="https://x/a")),
            "advertises no SMART token endpoint",
        ),
        (
            httpx.Response(200, json={"authorization_endpoint": "https://x/a"}),
            None,
            "has no token_endpoint",
        ),
    ],
)
def test_no_configuration_is_a_502(
    well_known: httpx.Response, metadata: httpx.Response | None, message: str
) -> None:
    _, handler = server(well_known, metadata)
    with pytest.raises(SmartError, match=message) as raised:
        fetch(handler)
    assert raised.value.status == 502


def test_an_unreachable_server_is_a_502() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(SmartError, match="could not be reached") as raised:
        fetch(handler)
    assert raised.value.status == 502


def test_the_launch_discovery_caches_per_server() -> None:
    seen, handler = server(httpx.Response(200, json=LAUNCHER))
    now = [0.0]

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            discovery = SmartDiscovery(client, ttl=60, clock=lambda: now[0])
            first = await discovery.get(BASE)
            assert await discovery.get(BASE) is first
            now[0] = 61
            assert await discovery.get(BASE) == first

    asyncio.run(run())
    assert len(seen) == 2
