"""Where a FHIR server's authorization server lives, for every SMART client of the service.

`fetch_smart_configuration` reads ``{fhir_base}/.well-known/smart-configuration`` (SMART App
Launch 2.x); when the server has no such document (any answer but a JSON object), it falls back
to the OAuth URIs extension of the server's CapabilityStatement (``{fhir_base}/metadata``), where
SMART 1.0 servers advertise their endpoints. The clinician's app launch reads it through
`SmartDiscovery` (cached briefly per server), SMART Backend Services (`bulk/auth.py`) directly.
Redirects are never followed: a client assertion or an authorization request must only go to
endpoints the FHIR server itself names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

__all__ = ["SmartConfiguration", "SmartDiscovery", "SmartError", "fetch_smart_configuration"]

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


class SmartError(Exception):
    """A SMART step that cannot go on (discovery, a launch); `message` is safe to show (no
    tokens), `status` is what the launch pages answer with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class SmartConfiguration:
    """What a SMART client needs from the server's configuration.

    Only `token_endpoint` is always there. A launch also needs `authorization_endpoint` (a
    Backend Services server may have none); the tuples are None when the server does not say.
    """

    token_endpoint: str
    authorization_endpoint: str | None = None
    issuer: str | None = None
    jwks_uri: str | None = None
    revocation_endpoint: str | None = None
    capabilities: frozenset[str] = field(default_factory=frozenset)
    scopes_supported: frozenset[str] = field(default_factory=frozenset)
    code_challenge_methods: frozenset[str] = field(default_factory=frozenset)
    token_auth_methods: tuple[str, ...] | None = None
    token_signing_algs: tuple[str, ...] | None = None
    grant_types: tuple[str, ...] | None = None

    @property
    def scopes_v2(self) -> bool:
        """True when the server understands SMART v2 scopes (`.rs`)."""
        if "permission-v2" in self.capabilities:
            return True
        if "permission-v1" in self.capabilities:
            return False
        return any(s.endswith((".rs", ".cruds", ".r")) for s in self.scopes_supported)


async def fetch_smart_configuration(
    client: httpx.AsyncClient, fhir_base: str
) -> SmartConfiguration:
    """The SMART configuration of the FHIR server at `fhir_base`, from its well-known document
    or else its CapabilityStatement. Raises SmartError (status 502) when neither gives one."""
    base = fhir_base.rstrip("/")
    well_known = f"{base}/.well-known/smart-configuration"
    response, body = await _get(client, well_known, "application/json")
    if body is not None:
        return _from_json(body, well_known)
    metadata = f"{base}/metadata"
    fallback, statement = await _get(client, metadata, "application/fhir+json")
    if statement is not None:
        return _from_capability_statement(statement, metadata)
    raise SmartError(
        f"the FHIR server {base} has no SMART configuration (.well-known/smart-configuration "
        f"answered HTTP {response.status_code}, metadata HTTP {fallback.status_code})",
        status=502,
    )


async def _get(
    client: httpx.AsyncClient, url: str, accept: str
) -> tuple[httpx.Response, dict[str, Any] | None]:
    """The response and its body when that is a JSON object with status 200."""
    try:
        response = await client.get(url, headers={"Accept": accept}, follow_redirects=False)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SmartError(f"{url} could not be reached ({type(exc).__name__})", status=502) from None
    if response.status_code != 200:
        return response, None
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response, None
    return response, body if isinstance(body, dict) else None


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value else None


def _strings(body: dict[str, Any], name: str) -> tuple[str, ...] | None:
    value = body.get(name)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else None


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _from_json(body: dict[str, Any], url: str) -> SmartConfiguration:
    token = _text(body, "token_endpoint")
    if token is None:
        raise SmartError(f"the SMART configuration at {url} has no token_endpoint", status=502)
    return SmartConfiguration(
        token_endpoint=token,
        authorization_endpoint=_text(body, "authorization_endpoint"),
        issuer=_text(body, "issuer"),
        jwks_uri=_text(body, "jwks_uri"),
        revocation_endpoint=_text(body, "revocation_endpoint"),
        capabilities=frozenset(_strings(body, "capabilities") or ()),
        scopes_supported=frozenset(_strings(body, "scopes_supported") or ()),
        code_challenge_methods=frozenset(_strings(body, "code_challenge_methods_supported") or ()),
        token_auth_methods=_strings(body, "token_endpoint_auth_methods_supported"),
        token_signing_algs=_strings(body, "token_endpoint_auth_signing_alg_values_supported"),
        grant_types=_strings(body, "grant_types_supported"),
    )


def _from_capability_statement(body: dict[str, Any], url: str) -> SmartConfiguration:
    for rest in _objects(body.get("rest")):
        security = rest.get("security")
        for ext in _objects(security.get("extension") if isinstance(security, dict) else None):
            if ext.get("url") == OAUTH_URIS:
                uris: dict[str, str] = {
                    e["url"]: e["valueUri"]
                    for e in _objects(ext.get("extension"))
                    if isinstance(e.get("url"), str) and isinstance(e.get("valueUri"), str)
                }
                if "token" in uris:
                    return SmartConfiguration(
                        token_endpoint=uris["token"],
                        authorization_endpoint=uris.get("authorize"),
                        revocation_endpoint=uris.get("revoke"),
                    )
    raise SmartError(
        f"the FHIR server has no .well-known/smart-configuration and its CapabilityStatement "
        f"({url}) advertises no SMART token endpoint",
        status=502,
    )


class SmartDiscovery:
    """Fetches and caches SMART configurations (five minutes by default)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, SmartConfiguration]] = {}

    async def get(self, fhir_base: str) -> SmartConfiguration:
        cached = self._cache.get(fhir_base)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        config = await fetch_smart_configuration(self._client, fhir_base)
        self._cache[fhir_base] = (self._clock(), config)
        return config
