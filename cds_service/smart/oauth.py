"""The OAuth 2.0 side of the launch: the authorization URL, the code exchange, refresh, revocation
and id_token verification. Secrets and tokens are never logged or put in URLs."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt
from jwt.exceptions import InvalidTokenError, PyJWKError, PyJWKSetError

from cds_service.security.smart_discovery import SmartConfiguration, SmartError
from cds_service.security.tenants import SmartClient

__all__ = ["adapt_scopes", "authorize_url", "exchange_code", "refresh", "revoke", "verify_id_token"]


def adapt_scopes(scopes: str, v2: bool) -> str:
    """Write scopes in the syntax the server advertises: v2 `.rs`, or v1 `.read`."""
    out = []
    for scope in scopes.split():
        resource, dot, permission = scope.rpartition(".")
        if dot and "/" in resource:
            if v2 and permission in ("read", "write", "*"):
                permission = {"read": "rs", "write": "cud", "*": "cruds"}[permission]
            elif not v2 and set(permission) <= set("cruds"):
                if set(permission) <= set("rs"):
                    permission = "read"
                elif set(permission) <= set("cud"):
                    permission = "write"
                else:
                    permission = "*"
            scope = f"{resource}.{permission}"
        out.append(scope)
    return " ".join(dict.fromkeys(out))


def authorize_url(
    authorization_endpoint: str,
    client: SmartClient,
    *,
    redirect_uri: str,
    scope: str,
    state: str,
    code_challenge: str,
    aud: str,
    launch: str | None,
) -> str:
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "aud": aud,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    if launch is not None:
        params["launch"] = launch
    separator = "&" if "?" in authorization_endpoint else "?"
    return f"{authorization_endpoint}{separator}{urlencode(params)}"


def _basic(client: SmartClient) -> str:
    """client_secret_basic: form-encoded id and secret, base64 (RFC 6749 §2.3.1)."""
    assert client.client_secret is not None
    pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


async def _token_request(
    http: httpx.AsyncClient, config: SmartConfiguration, client: SmartClient, form: dict[str, str]
) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if client.client_secret is not None:
        headers["Authorization"] = _basic(client)
    else:
        form = {**form, "client_id": client.client_id}
    try:
        response = await http.post(config.token_endpoint, data=form, headers=headers)
    except httpx.HTTPError:
        raise SmartError("the EHR's token endpoint could not be reached", status=502) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        raise SmartError(f"the EHR refused the token request ({error or response.status_code})")
    if str(body.get("token_type", "")).lower() != "bearer":
        raise SmartError("the EHR issued a token that is not a bearer token")
    return body


async def exchange_code(
    http: httpx.AsyncClient,
    config: SmartConfiguration,
    client: SmartClient,
    *,
    code: str,
    redirect_uri: str,
    verifier: str,
) -> dict[str, Any]:
    """Trade the authorization code (with the PKCE verifier) for tokens."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    return await _token_request(http, config, client, form)


async def refresh(
    http: httpx.AsyncClient, config: SmartConfiguration, client: SmartClient, refresh_token: str
) -> dict[str, Any]:
    return await _token_request(
        http, config, client, {"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


async def revoke(
    http: httpx.AsyncClient, config: SmartConfiguration, client: SmartClient, token: str
) -> bool:
    """Revoke a token where the server offers revocation; False when it does not or fails."""
    if config.revocation_endpoint is None:
        return False
    form = {"token": token}
    headers = {}
    if client.client_secret is not None:
        headers["Authorization"] = _basic(client)
    else:
        form["client_id"] = client.client_id
    try:
        response = await http.post(config.revocation_endpoint, data=form, headers=headers)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def verify_id_token(
    id_token: str,
    config: SmartConfiguration,
    client: SmartClient,
    jwks: dict[str, Any],
    *,
    now: float,
) -> dict[str, Any]:
    """Check the id_token's signature (the server's JWKS), issuer, audience and expiry at `now`
    (epoch seconds, from the app's clock)."""
    try:
        header = jwt.get_unverified_header(id_token)
        keys = jwt.PyJWKSet.from_dict(jwks)
        key = next(
            k for k in keys.keys if k.key_id == header.get("kid") or header.get("kid") is None
        )
        alg = header.get("alg")
        if alg not in ("RS256", "RS384", "ES256", "ES384", "PS256"):
            raise SmartError("the id_token uses an algorithm we do not accept")
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key.key,
            algorithms=[alg],
            audience=client.client_id,
            issuer=config.issuer,
            options={"verify_exp": False, "require": ["exp", "iss", "aud"]},
        )
    except (InvalidTokenError, StopIteration, PyJWKError, PyJWKSetError, ValueError):
        raise SmartError("the EHR's id_token does not verify") from None
    if float(claims["exp"]) < now:
        raise SmartError("the EHR's id_token has expired")
    return claims
