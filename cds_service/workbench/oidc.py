"""OpenID Connect against the workbench's identity provider: discovery, the authorization URL,
the code exchange and the id_token's verification.

The provider is found at `{issuer}/.well-known/openid-configuration` (cached for an hour); the
document's `issuer` must equal the configured one exactly. The id_token is checked against the
provider's published keys (asymmetric algorithms only: never `none` or an HMAC), its issuer,
audience (our client id), expiry, issue time (a minute of clock skew either way) and the nonce
sent with the authorization request. Nothing here logs or returns a code or a token; an
`OidcError` message is safe to show.
"""

from __future__ import annotations

import base64
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import jwt

__all__ = ["ALGORITHMS", "Identity", "OidcClient", "OidcError", "ProviderConfig"]

ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
SKEW_SECONDS = 60
DISCOVERY_SECONDS = 3600.0
JWKS_SECONDS = 3600.0
JWKS_REFETCH_SECONDS = 30.0  # an unknown `kid` refetches the keys at most this often
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class OidcError(Exception):
    """A sign-in step that cannot go on. `message` is safe to show (no code, token or claim
    value); `status` is 400 when the browser's request is at fault, 502 when the provider is."""

    def __init__(self, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error_code(value: object) -> str:
    """An OAuth `error` value fit to show, or "unknown" (it may come from anyone's link)."""
    return value if isinstance(value, str) and _ERROR_CODE.fullmatch(value) else "unknown"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """The endpoints of the provider's discovery document that the sign-in uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed in, from a verified id_token. `email` is None when the provider says it is
    not verified; `groups` is the configured groups claim (empty when absent)."""

    subject: str
    name: str
    email: str | None
    groups: tuple[str, ...]


def _allowed_url(url: object, issuer: str) -> bool:
    """https, or http on the loopback host when the issuer itself is (a local provider)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return (
        parts.scheme == "http"
        and parts.hostname in ("127.0.0.1", "localhost")
        and urlsplit(issuer).scheme == "http"
    )


class OidcClient:
    """One identity provider and one client registered with it.

    >>> client = OidcClient(http, issuer="https://login.example.org/realms/staff",
    ...                     client_id="cds-workbench", client_secret=None)   # doctest: +SKIP
    >>> config = await client.configuration()                                 # doctest: +SKIP
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        scopes: str = "openid profile email",
        groups_claim: str = "groups",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self.issuer = issuer
        self.client_id = client_id
        self._secret = client_secret
        self.scopes = scopes
        self.groups_claim = groups_claim
        self.clock = clock
        self._config: tuple[float, ProviderConfig] | None = None
        self._jwks: tuple[float, list[dict[str, Any]]] | None = None

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            name = type(exc).__name__
            raise OidcError(f"the identity provider's {what} could not be read ({name})") from None
        if response.status_code != 200:
            raise OidcError(f"the identity provider's {what} answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OidcError(f"the identity provider's {what} is not a JSON object")
        return body

    async def configuration(self) -> ProviderConfig:
        """The provider's endpoints, from its discovery document (cached)."""
        now = self.clock()
        if self._config is not None and now - self._config[0] < DISCOVERY_SECONDS:
            return self._config[1]
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        body = await self._get_json(url, "discovery document")
        if body.get("issuer") != self.issuer:
            raise OidcError(
                "the identity provider's discovery document names another issuer than "
                "CDS_WORKBENCH_OIDC_ISSUER (they must be equal, trailing slash included)"
            )
        names = ("authorization_endpoint", "token_endpoint", "jwks_uri")
        bad = [name for name in names if not _allowed_url(body.get(name), self.issuer)]
        if bad:
            raise OidcError(f"the identity provider's discovery document has no https {bad[0]}")
        methods = body.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise OidcError("the identity provider does not support PKCE with S256")
        config = ProviderConfig(self.issuer, *(str(body[name]) for name in names))
        self._config = (now, config)
        return config

    def authorization_url(
        self,
        config: ProviderConfig,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
    ) -> str:
        """Where to send the browser: the code flow with PKCE S256, `state` and `nonce`."""
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        endpoint = config.authorization_endpoint
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"

    async def exchange_code(
        self, config: ProviderConfig, *, code: str, redirect_uri: str, verifier: str
    ) -> str:
        """Trade the authorization code (with the PKCE verifier) for the id_token; the other
        tokens in the answer are dropped at once (the workbench never calls the provider's
        APIs)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        if self._secret is not None:  # client_secret_basic (RFC 6749 §2.3.1)
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.client_id
        try:
            response = await self._http.post(config.token_endpoint, data=form, headers=headers)
        except httpx.HTTPError as exc:
            name = type(exc).__name__
            raise OidcError(
                f"the identity provider's token endpoint could not be reached ({name})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            code_name = error_code(body.get("error") if isinstance(body, dict) else None)
            if response.status_code == 400 and code_name == "invalid_grant":
                raise OidcError(
                    "the identity provider did not accept this sign-in (invalid_grant): it may "
                    "have expired or been used already; sign in again",
                    status=400,
                )
            raise OidcError(
                "the identity provider's token endpoint refused the sign-in "
                f"(HTTP {response.status_code}, {code_name})"
            )
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcError("the identity provider's token answer has no id_token")
        return id_token

    async def _keys(self, config: ProviderConfig, *, refresh: bool) -> list[dict[str, Any]]:
        now = self.clock()
        cached = self._jwks
        if cached is not None:
            age = now - cached[0]
            if age < JWKS_SECONDS and not (refresh and age >= JWKS_REFETCH_SECONDS):
                return cached[1]
        body = await self._get_json(config.jwks_uri, "key set")
        found = body.get("keys")
        keys = [k for k in found if isinstance(k, dict)] if isinstance(found, list) else []
        self._jwks = (now, keys)
        return keys

    async def _key(self, config: ProviderConfig, kid: object, alg: str) -> jwt.PyJWK:
        for refresh in (False, True):
            keys = await self._keys(config, refresh=refresh)
            found = _pick(keys, kid, alg)
            if found is not None:
                return found
        raise OidcError("the id_token is signed with a key the identity provider does not publish")

    async def identity(self, id_token: str, *, nonce: str) -> Identity:
        """Who the verified id_token says signed in; OidcError (502) when it does not verify."""
        config = await self.configuration()
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcError("the identity provider's id_token is not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise OidcError("the id_token uses a signing algorithm the workbench does not accept")
        key = await self._key(config, header.get("kid"), alg)
        claims = self._decode(id_token, key, alg)
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise OidcError("the id_token's nonce is not the one this sign-in sent")
        return _identity(claims, self.groups_claim)

    def _decode(self, id_token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=[alg],
                audience=self.client_id,
                issuer=self.issuer,
                options={
                    "require": ["iss", "aud", "exp", "iat", "sub"],
                    "verify_exp": False,  # checked below against our clock
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise OidcError("the id_token was issued for another client (aud)") from None
        except jwt.InvalidIssuerError:
            raise OidcError("the id_token was issued by another issuer (iss)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise OidcError(f"the id_token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise OidcError("the id_token's signature does not verify") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise OidcError("the identity provider's id_token does not verify") from None
        now = self.clock()
        try:
            exp, iat = float(claims["exp"]), float(claims["iat"])
            nbf = float(claims.get("nbf", iat))
        except (TypeError, ValueError):
            raise OidcError("the id_token's times are not numbers") from None
        if exp < now - SKEW_SECONDS:
            raise OidcError("the id_token has expired (check the clocks)")
        if iat > now + SKEW_SECONDS or nbf > now + SKEW_SECONDS:
            raise OidcError("the id_token is not valid yet (check the clocks)")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("the id_token has several audiences and is not authorized for us")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise OidcError("the id_token has no subject")
        return claims


def _pick(keys: list[dict[str, Any]], kid: object, alg: str) -> jwt.PyJWK | None:
    """The signing key named `kid` (or the only signing key when the token names none)."""
    signing = [k for k in keys if k.get("use", "sig") == "sig" and k.get("alg", alg) == alg]
    if kid is None:
        candidates = signing if len(signing) == 1 else []
    else:
        candidates = [k for k in signing if k.get("kid") == kid]
    for candidate in candidates:
        try:
            return jwt.PyJWK(candidate, algorithm=alg)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue  # not a key for this algorithm
    return None


def _text(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value.strip()[:200] if isinstance(value, str) and value.strip() else None


def _identity(claims: dict[str, Any], groups_claim: str) -> Identity:
    email = _text(claims, "email")
    if claims.get("email_verified") in (False, "false"):
        email = None  # an address the provider has not verified grants nothing
    raw = claims.get(groups_claim)
    groups = (raw,) if isinstance(raw, str) else raw if isinstance(raw, list) else ()
    name = _text(claims, "name") or _text(claims, "preferred_username") or email
    return Identity(
        subject=str(claims["sub"]),
        name=name or str(claims["sub"]),
        email=email.lower() if email else None,
        groups=tuple(g for g in groups if isinstance(g, str)),
    )
