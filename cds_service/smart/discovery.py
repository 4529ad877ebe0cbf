"""Where a FHIR server's authorization server lives: `.well-known/smart-configuration`, falling
back to the OAuth URIs extension of the CapabilityStatement; cached briefly per server."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["SmartConfiguration", "SmartDiscovery", "SmartError"]

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


class SmartError(Exception):
    """A launch that cannot go on; `message` is safe to show (no tokens)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class SmartConfiguration:
    authorization_endpoint: str
    token_endpoint: str
    issuer: str | None = None
    jwks_uri: str | None = None
    revocation_endpoint: str | None = None
    capabilities: frozenset[str] = field(default_factory=frozenset)
    scopes_supported: frozenset[str] = field(default_factory=frozenset)
    code_challenge_methods: frozenset[str] = field(default_factory=frozenset)

    @property
    def scopes_v2(self) -> bool:
        """True when the server understands SMART v2 scopes (`.rs`)."""
        if "permission-v2" in self.capabilities:
            return True
        if "permission-v1" in self.capabilities:
            return False
        return any(s.endswith((".rs", ".cruds", ".r")) for s in self.scopes_supported)


def _from_json(body: dict[str, Any]) -> SmartConfiguration:
    def strings(name: str) -> frozenset[str]:
        value = body.get(name)
        return (
            frozenset(v for v in value if isinstance(v, str))
            if isinstance(value, list)
            else frozenset()
        )

    auth, token = body.get("authorization_endpoint"), body.get("token_endpoint")
    if not isinstance(auth, str) or not isinstance(token, str):
        raise SmartError("the EHR's SMART configuration has no authorization or token endpoint")
    return SmartConfiguration(
        authorization_endpoint=auth,
        token_endpoint=token,
        issuer=body.get("issuer") if isinstance(body.get("issuer"), str) else None,
        jwks_uri=body.get("jwks_uri") if isinstance(body.get("jwks_uri"), str) else None,
        revocation_endpoint=(
            body["revocation_endpoint"]
            if isinstance(body.get("revocation_endpoint"), str)
            else None
        ),
        capabilities=strings("capabilities"),
        scopes_supported=strings("scopes_supported"),
        code_challenge_methods=strings("code_challenge_methods_supported"),
    )


def _from_capability_statement(body: dict[str, Any]) -> SmartConfiguration:
    for rest in body.get("rest", []) or []:
        security = rest.get("security", {}) if isinstance(rest, dict) else {}
        for ext in security.get("extension", []) or []:
            if isinstance(ext, dict) and ext.get("url") == OAUTH_URIS:
                uris: dict[str, str] = {
                    e["url"]: e["valueUri"]
                    for e in ext.get("extension", [])
                    if isinstance(e, dict)
                    and isinstance(e.get("url"), str)
                    and isinstance(e.get("valueUri"), str)
                }
                if "authorize" in uris and "token" in uris:
                    return SmartConfiguration(
                        authorization_endpoint=uris["authorize"],
                        token_endpoint=uris["token"],
                        revocation_endpoint=uris.get("revoke"),
                    )
    raise SmartError("the EHR's FHIR server advertises no SMART authorization endpoints")


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
        config = await self._fetch(fhir_base)
        self._cache[fhir_base] = (self._clock(), config)
        return config

    async def _fetch(self, fhir_base: str) -> SmartConfiguration:
        headers = {"Accept": "application/json"}
        try:
            response = await self._client.get(
                f"{fhir_base}/.well-known/smart-configuration", headers=headers
            )
            if response.status_code == 200:
                return _from_json(response.json())
            response = await self._client.get(
                f"{fhir_base}/metadata", headers={"Accept": "application/fhir+json"}
            )
            if response.status_code == 200:
                return _from_capability_statement(response.json())
        except (httpx.HTTPError, ValueError):
            message = "the EHR's authorization server could not be reached"
            raise SmartError(message, status=502) from None
        raise SmartError("the EHR's FHIR server has no SMART configuration", status=502)
