"""Verifying the JWT an EHR sends with every call (CDS Hooks 2.0 "Trusting CDS Clients").

Checks, in the order the CDS Hooks best practices give, each refusing with its own reason (logged,
never sent to the caller):

1. a bearer token that parses as a JWT;
2. `iss` is a tenant's issuer;
3. `aud` (string or array) contains the URL of the endpoint called;
4. `exp`, `nbf` and `iat` hold, with a small clock skew; the lifetime (`exp - iat`) is at most
   `CDS_JWT_MAX_LIFETIME_SECONDS` (which also bounds the replay cache);
5. `tenant`, when sent, is one of the issuer's tenants (without it the issuer must have one);
6. the signature: the header's `alg` must be one of the tenant's (asymmetric only: `none` and
   HMAC are refused whatever the header says), `typ` JWT when present, `kid` present, `jku` (when
   present) the tenant's `jwks_url` or one of its `jku_allowed` (never fetched), and the key
   with that `kid` must verify it;
7. `jti` is present and has not been seen while the token lives.

PyJWT does the cryptography; the time checks are ours so the clock can be injected.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from jwt.algorithms import Algorithm
from jwt.exceptions import InvalidKeyError, InvalidTokenError
from jwt.utils import base64url_decode

from cds_service.security.jwks import KeyStore
from cds_service.security.replay import ReplayCache
from cds_service.security.tenants import Tenant, TenantRegistry

__all__ = ["AuthFailure", "JwtVerifier", "Principal", "Signed", "parse_jws"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant (None when authentication is disabled) and token ids."""

    tenant: Tenant | None
    issuer: str | None = None
    jti: str | None = None

    @property
    def tenant_id(self) -> str:
        return self.tenant.id if self.tenant is not None else "default"


class AuthFailure(Exception):
    """A refused token; `reason` is for the log only."""

    def __init__(self, reason: str, **ids: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ids = {k: v for k, v in ids.items() if isinstance(v, str | int) and v != ""}


def _number(claims: dict[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise AuthFailure(f"missing {name}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthFailure(f"{name} is not a number")
    return float(value)


@dataclass(frozen=True, slots=True)
class Signed:
    """What a JWS signature covers (`header.payload`, as sent) and the signature's bytes."""

    signing_input: bytes
    signature: bytes


# A segment of a compact JWS: base64url without padding (PyJWT, and issuers such as AWS ALB,
# also send up to two '=' of padding: accepted).
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def _segment(text: str) -> bytes | None:
    """A base64url segment's bytes, or None when it is not one."""
    if _SEGMENT.fullmatch(text) is None:
        return None
    stripped = text.rstrip("=")
    if len(stripped) % 4 == 1 or (stripped != text and len(text) % 4 != 0):
        return None
    try:
        return base64url_decode(stripped)
    except ValueError:
        return None


def parse_jws(token: str) -> tuple[dict[str, Any], dict[str, Any], Signed] | None:
    """A compact JWS's header and claims (JSON objects) and what its signature covers, read
    once and unverified; None when it is not a JWT (three base64url segments, the first two
    JSON objects)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header_bytes, claims_bytes, signature = (_segment(part) for part in parts)
    if header_bytes is None or claims_bytes is None or signature is None:
        return None
    try:
        header, claims = orjson.loads(header_bytes), orjson.loads(claims_bytes)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims, Signed(f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


@functools.cache
def _algorithm(name: str) -> Algorithm:
    """PyJWT's implementation of a signing algorithm (the tenant's list is checked before)."""
    return jwt.get_algorithm_by_name(name)


class JwtVerifier:
    """Checks tokens against the tenants, their keys and the replay cache."""

    def __init__(
        self,
        tenants: TenantRegistry,
        keys: KeyStore,
        replay: ReplayCache,
        *,
        skew_seconds: int = 60,
        max_lifetime_seconds: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenants = tenants
        self.keys = keys
        self.replay = replay
        self.skew = skew_seconds
        self.max_lifetime = max_lifetime_seconds
        self.clock = clock

    async def verify(self, authorization: str | None, audience: str) -> Principal:
        """The caller, or AuthFailure with the reason."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailure("no bearer token")
        parsed = parse_jws(token.strip())
        if parsed is None:
            raise AuthFailure("malformed token")
        header, claims, signed = parsed
        issuer, jti = claims.get("iss"), claims.get("jti")
        ids = {"iss": issuer, "jti": jti, "tenant": claims.get("tenant")}
        try:
            return await self._check(signed, header, claims, audience)
        except AuthFailure as failure:
            failure.ids = {**{k: v for k, v in ids.items() if isinstance(v, str)}, **failure.ids}
            raise

    async def _check(
        self, signed: Signed, header: dict[str, Any], claims: dict[str, Any], audience: str
    ) -> Principal:
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not self.tenants.knows_issuer(issuer):
            raise AuthFailure("issuer not allow-listed")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if audience not in audiences:
            raise AuthFailure("aud is not the endpoint called", expected=audience)
        now = self.clock()
        exp = _number(claims, "exp", True)
        iat = _number(claims, "iat", True)
        nbf = _number(claims, "nbf", False)
        assert exp is not None and iat is not None
        if now > exp + self.skew:
            raise AuthFailure("expired")
        if nbf is not None and now + self.skew < nbf:
            raise AuthFailure("not yet valid (nbf)")
        if iat > now + self.skew:
            raise AuthFailure("issued in the future (iat)")
        if exp - iat > self.max_lifetime:
            raise AuthFailure("lifetime longer than allowed")
        tenant_claim = claims.get("tenant")
        if tenant_claim is not None and not isinstance(tenant_claim, str):
            raise AuthFailure("tenant claim is not a string")
        tenant = self.tenants.resolve(issuer, tenant_claim)
        if tenant is None:
            raise AuthFailure("tenant not allow-listed for this issuer")
        await self._check_signature(signed, header, tenant)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthFailure("missing jti")
        ttl = int(exp - now + self.skew) + 1
        if not await self.replay.first_use(f"{tenant.id}:{jti}", ttl):
            raise AuthFailure("jti replayed")
        return Principal(tenant, issuer, jti)

    async def _check_signature(
        self, signed: Signed, header: dict[str, Any], tenant: Tenant
    ) -> None:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in tenant.algorithms:
            raise AuthFailure(f"algorithm {alg!r} not accepted for this tenant")
        typ = header.get("typ")
        if typ is not None and str(typ).upper() != "JWT":
            raise AuthFailure("typ is not JWT")
        jku = header.get("jku")
        if jku is not None and not tenant.accepts_jku(jku):
            raise AuthFailure("jku is neither the tenant's jwks_url nor in its jku_allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthFailure("missing kid")
        key = await self.keys.key(tenant, kid)
        if key is None:
            raise AuthFailure("unknown kid", kid=kid)
        # The signature alone, with PyJWT's algorithm: the token was parsed once (`parse_jws`)
        # and its claims checked above.
        algorithm = _algorithm(alg)
        try:
            prepared = algorithm.prepare_key(key.key)
            valid = algorithm.verify(signed.signing_input, prepared, signed.signature)
        except (InvalidTokenError, InvalidKeyError, ValueError, TypeError) as exc:
            raise AuthFailure(f"signature does not verify ({type(exc).__name__})") from None
        if not valid:
            raise AuthFailure("signature does not verify (InvalidSignatureError)")
