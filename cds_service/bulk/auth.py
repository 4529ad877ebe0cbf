"""SMART Backend Services authorization (SMART App Launch 2.x): a system-level access token.

1. Discovery (`cds_service.security.smart_discovery`, shared with the app launch): the server's
   ``.well-known/smart-configuration``, or its CapabilityStatement's OAuth URIs, gives the
   ``token_endpoint``; when the configuration lists ``token_endpoint_auth_methods_supported``
   (``grant_types_supported``, ``token_endpoint_auth_signing_alg_values_supported``) they must
   include ``private_key_jwt`` (``client_credentials``, our RS384/ES384).
2. A client assertion: a JWT signed with the client's private key (see keys.py), header
   ``alg``/``kid``/``typ: JWT``, claims ``iss = sub = client_id``, ``aud = token endpoint``,
   ``exp`` at most 5 minutes ahead, ``iat``, and a fresh ``jti``.
3. ``POST`` to the token endpoint (form: ``grant_type=client_credentials``, ``scope``,
   ``client_assertion_type``, ``client_assertion``); the answer has ``access_token``,
   ``expires_in`` and the granted ``scope``.

`TokenSource` caches the token and fetches a new one shortly before it expires. Redirects are
never followed (the assertion goes to the discovered endpoint only), the token endpoint must be
https (http only on loopback), and neither the token nor the assertion is ever logged or put in
an error message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from cds_service.bulk.errors import BulkError, clean_text
from cds_service.bulk.httputil import json_body, redact_url, require_secure
from cds_service.bulk.keys import SigningKey, load_private_key
from cds_service.security.smart_discovery import (
    SmartConfiguration,
    SmartError,
    fetch_smart_configuration,
)

__all__ = [
    "CLIENT_ASSERTION_TYPE",
    "AccessToken",
    "TokenSource",
    "build_client_assertion",
    "discover",
    "load_private_key",
    "request_token",
    "scopes_for_types",
]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300
_DEFAULT_EXPIRES_IN = 300.0


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token (never shown by repr), its lifetime in seconds and the scope granted."""

    access_token: str = field(repr=False)
    expires_in: float
    scope: str | None
    obtained_at: float

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.expires_in


def scopes_for_types(types: Iterable[str], *, v1: bool = False) -> str:
    """System read scopes for resource types: ``system/Patient.rs ...`` (v1: ``.read``)."""
    suffix = "read" if v1 else "rs"
    return " ".join(f"system/{t}.{suffix}" for t in dict.fromkeys(types))


async def discover(client: httpx.AsyncClient, fhir_base: str) -> SmartConfiguration:
    """The server's SMART configuration; BulkError unless Backend Services with
    ``private_key_jwt`` is possible."""
    try:
        config = await fetch_smart_configuration(client, fhir_base)
    except SmartError as exc:
        raise BulkError(f"SMART discovery failed: {exc.message}") from None
    if config.token_auth_methods is not None and "private_key_jwt" not in config.token_auth_methods:
        raise BulkError("the server does not support private_key_jwt client authentication")
    if config.grant_types is not None and "client_credentials" not in config.grant_types:
        raise BulkError("the server does not support the client_credentials grant")
    return config


def build_client_assertion(
    key: SigningKey,
    client_id: str,
    token_endpoint: str,
    *,
    now: float | None = None,
    lifetime: int = MAX_ASSERTION_LIFETIME,
) -> str:
    """The signed client assertion JWT (valid for `lifetime` seconds, at most 300)."""
    if not 0 < lifetime <= MAX_ASSERTION_LIFETIME:
        raise ValueError("a client assertion may live at most 300 seconds")
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "exp": issued + lifetime,
        "iat": issued,
        "jti": uuid.uuid4().hex,
    }
    headers = {"kid": key.kid, "typ": "JWT"}
    return jwt.encode(claims, key.key, algorithm=key.alg, headers=headers)


async def request_token(
    client: httpx.AsyncClient,
    token_endpoint: str,
    *,
    client_id: str,
    key: SigningKey,
    scope: str,
    clock: Callable[[], float] = time.time,
) -> AccessToken:
    """One client-credentials token request with a fresh client assertion."""
    require_secure(token_endpoint, "the token endpoint")
    now = clock()  # for the token's expiry; the assertion always uses the real time
    assertion = build_client_assertion(key, client_id, token_endpoint)
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    where = redact_url(token_endpoint)
    try:
        response = await client.post(
            token_endpoint,
            data=form,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise BulkError(f"the token request to {where} failed ({type(exc).__name__})") from None
    body = json_body(response)
    if response.status_code != 200:
        raise BulkError(
            f"the token endpoint {where} refused (HTTP {response.status_code})"
            + _oauth_error(body, assertion),
            server_status=response.status_code,
        )
    return _parse_token(body, now, where)


class TokenSource:
    """A cached Backend Services access token, renewed `refresh_margin` seconds before expiry.

    Give `token_endpoint`, or `fhir_base` to discover it on first use. Safe to share between
    tasks: one refresh at a time.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        client_id: str,
        key: SigningKey,
        scope: str,
        fhir_base: str | None = None,
        token_endpoint: str | None = None,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fhir_base is None and token_endpoint is None:
            raise ValueError("give fhir_base (for discovery) or token_endpoint")
        self._client = client
        self._client_id = client_id
        self._key = key
        self._scope = scope
        self._fhir_base = fhir_base
        self._endpoint = token_endpoint
        self._margin = refresh_margin
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"TokenSource(client_id={self._client_id!r}, scope={self._scope!r})"

    @property
    def granted_scope(self) -> str | None:
        """The scope the server granted with the current token (None before the first one)."""
        return self._token.scope if self._token else None

    async def token_endpoint(self) -> str:
        """The token endpoint, discovered on first use when not given."""
        if self._endpoint is None:
            assert self._fhir_base is not None
            config = await discover(self._client, self._fhir_base)
            algs = config.token_signing_algs
            if algs is not None and self._key.alg not in algs:
                raise BulkError(f"the server does not accept {self._key.alg} client assertions")
            self._endpoint = config.token_endpoint
        return self._endpoint

    async def get(self) -> str:
        """A valid access token, fetched or renewed when needed."""
        async with self._lock:
            if self._token is None or self._clock() >= self._refresh_at(self._token):
                endpoint = await self.token_endpoint()
                self._token = await request_token(
                    self._client,
                    endpoint,
                    client_id=self._client_id,
                    key=self._key,
                    scope=self._scope,
                    clock=self._clock,
                )
            return self._token.access_token

    def invalidate(self) -> None:
        """Forget the token (e.g. after a 401); the next `get` fetches a new one."""
        self._token = None

    def _refresh_at(self, token: AccessToken) -> float:
        lifetime = token.expires_in
        return token.obtained_at + max(lifetime - self._margin, lifetime / 2)


def _parse_token(body: Any, now: float, where: str) -> AccessToken:
    if not isinstance(body, dict):
        raise BulkError(f"the token endpoint {where} answered without a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise BulkError(f"the token endpoint {where} answered without an access_token")
    token_type = body.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise BulkError(f"the token endpoint {where} issued a non-bearer token")
    expires_in = body.get("expires_in", _DEFAULT_EXPIRES_IN)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = _DEFAULT_EXPIRES_IN
    scope = body.get("scope")
    return AccessToken(token, float(expires_in), scope if isinstance(scope, str) else None, now)


def _oauth_error(body: Any, assertion: str) -> str:
    """': error: description' from an OAuth error body, with the assertion scrubbed out."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return ""
    text = body["error"]
    description = body.get("error_description")
    if isinstance(description, str) and description:
        text += f": {description}"
    return ": " + clean_text(text.replace(assertion, "[client assertion]"), 200)
