"""Test doubles for the bulk tests: generated keys and a FHIR server played by httpx.MockTransport.

The fake server checks what a real one would: the client assertion's signature (with the public
key), alg, kid, typ and claims; the kick-off headers; the bearer token on every protected request.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.bulk.auth import CLIENT_ASSERTION_TYPE
from cds_service.bulk.keys import PrivateKey, SigningKey
from cds_service.security.smart_discovery import OAUTH_URIS

BULK_FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "bulk-ndjson"
MOCKS = BULK_FIXTURES / "bulk-data-tools-mocks"
SAMPLE_10 = BULK_FIXTURES / "sample-bulk-fhir-datasets-10-patients"

BASE = "https://fhir.example.org/r4"
TOKEN_URL = "https://auth.example.org/oauth2/token"
STATUS_URL = f"{BASE}/bulkstatus/42"
CLIENT_ID = "precompute-client"
SCOPE = "system/Patient.rs system/Condition.rs"


def capability_statement() -> dict[str, Any]:
    """A SMART 1.0 server's CapabilityStatement: the OAuth URIs extension names the endpoint."""
    uris = [{"url": "token", "valueUri": TOKEN_URL}]
    extension = [{"url": OAUTH_URIS, "extension": uris}]
    return {
        "resourceType": "CapabilityStatement",
        "rest": [{"mode": "server", "security": {"extension": extension}}],
    }


@cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def signing_key(kind: str = "rsa") -> SigningKey:
    if kind == "rsa":
        return SigningKey(rsa_key(), "RS384", "rsa-kid-1")
    return SigningKey(ec_key(), "ES384", "ec-kid-1")


def fixture_lines(path: Path, count: int | None = None) -> list[bytes]:
    """The first `count` lines of a real fixture file, each with its newline."""
    lines = path.read_bytes().splitlines(keepends=True)
    return [line if line.endswith(b"\n") else line + b"\n" for line in lines[:count]]


def outcome(diagnostics: str, code: str = "exception", severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


async def _chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


StatusStep = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class FakeFhirServer:
    """A SMART + Bulk Data server. `status_steps` answer successive status requests; the last
    one repeats. Files are served in 7-byte chunks so lines straddle chunk boundaries."""

    def __init__(
        self,
        key: SigningKey,
        *,
        files: dict[str, bytes] | None = None,
        errors: dict[str, bytes] | None = None,
        requires_access_token: bool = True,
        status_steps: list[StatusStep] | None = None,
        manifest_extra: dict[str, Any] | None = None,
        smart_configuration: dict[str, Any] | None = None,
        well_known: bool = True,
    ) -> None:
        self.public_key = key.key.public_key()
        self.alg = key.alg
        self.kid = key.kid
        self.files = files or {}
        self.errors = errors or {}
        self.requires_access_token = requires_access_token
        self.manifest_extra = manifest_extra or {}
        self.smart_configuration = smart_configuration or {
            "token_endpoint": TOKEN_URL,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["client_credentials"],
        }
        # Without the well-known document the token endpoint is in the CapabilityStatement.
        self.well_known = well_known
        self.status_steps = status_steps or [
            in_progress("Collecting Patient (10%)"),
            in_progress("Collecting Condition (60%)"),
            self.complete,
        ]
        self.requests: list[httpx.Request] = []
        self.issued: set[str] = set()
        self.jtis: set[str] = set()
        self.assertions: list[str] = []
        self.token_error: tuple[int, dict[str, Any]] | None = None
        self.kick_off_params: dict[str, list[str]] = {}
        self.status_calls = 0
        self.deletes = 0

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def paths(self, method: str | None = None) -> list[str]:
        return [r.url.path for r in self.requests if method is None or r.method == method]

    def manifest(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "transactionTime": "2024-08-06T18:12:57Z",
            "request": f"{BASE}/Group/sample-10/$export",
            "requiresAccessToken": self.requires_access_token,
            "output": [
                {"type": name.split(".")[0], "url": f"{BASE}/files/{name}"} for name in self.files
            ],
            "error": [
                {"type": "OperationOutcome", "url": f"{BASE}/files/{n}"} for n in self.errors
            ],
        }
        return body | self.manifest_extra

    def complete(self, request: httpx.Request) -> httpx.Response:
        return json_response(200, self.manifest())

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url).split("?")[0]
        if url == f"{BASE}/.well-known/smart-configuration":
            if not self.well_known:
                return json_response(404, outcome("no such file", code="not-found"))
            return json_response(200, self.smart_configuration)
        if url == f"{BASE}/metadata" and not self.well_known:
            return json_response(200, capability_statement())
        if url == TOKEN_URL and request.method == "POST":
            return self.token(request)
        if not self.authorized(request, url):
            return json_response(401, outcome("no or bad token", code="login"))
        if "/$export" in url:
            return self.kick_off(request)
        if url == STATUS_URL and request.method == "DELETE":
            self.deletes += 1
            return httpx.Response(202)
        if url == STATUS_URL:
            step = self.status_steps[min(self.status_calls, len(self.status_steps) - 1)]
            self.status_calls += 1
            result = step(request)
            return result if isinstance(result, httpx.Response) else await result
        name = url.removeprefix(f"{BASE}/files/")
        data = self.files.get(name, self.errors.get(name))
        if data is None:
            return json_response(404, outcome(f"no file {name}", code="not-found"))
        return httpx.Response(
            200, headers={"Content-Type": "application/fhir+ndjson"}, content=_chunked(data, 7)
        )

    def authorized(self, request: httpx.Request, url: str) -> bool:
        if url.startswith(f"{BASE}/files/") and not self.requires_access_token:
            return True
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header.removeprefix("Bearer ") in self.issued

    def kick_off(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Accept") != "application/fhir+json":
            return json_response(400, outcome("Accept must be application/fhir+json"))
        if request.headers.get("Prefer") != "respond-async":
            return json_response(400, outcome("Prefer: respond-async is required"))
        self.kick_off_params = parse_qs(request.url.query.decode())
        return httpx.Response(202, headers={"Content-Location": STATUS_URL})

    def token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.assertions.append(form.get("client_assertion", ""))
        if self.token_error is not None:
            return json_response(*self.token_error)
        problem = self.verify(form)
        if problem is not None:
            return json_response(401, {"error": "invalid_client", "error_description": problem})
        token = secrets.token_urlsafe(24)
        self.issued.add(token)
        return json_response(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": 300,
                "scope": form["scope"],
            },
        )

    def verify(self, form: dict[str, str]) -> str | None:
        """Why the token request is refused, or None when it is good."""
        if form.get("grant_type") != "client_credentials":
            return "grant_type must be client_credentials"
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            return "wrong client_assertion_type"
        if not form.get("scope", "").startswith("system/"):
            return "system scopes expected"
        assertion = form.get("client_assertion", "")
        header = jwt.get_unverified_header(assertion)
        if (header.get("alg"), header.get("kid"), header.get("typ")) != (self.alg, self.kid, "JWT"):
            return f"bad header {header}"
        try:
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=[self.alg],
                audience=TOKEN_URL,
                issuer=CLIENT_ID,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.InvalidTokenError as exc:
            return f"assertion rejected: {exc}"
        if claims["sub"] != CLIENT_ID:
            return "sub must be the client_id"
        if claims["exp"] > time.time() + 300 + 5:
            return "exp more than 5 minutes ahead"
        if claims["jti"] in self.jtis:
            return "jti replayed"
        self.jtis.add(claims["jti"])
        return None


def in_progress(progress: str, retry_after: str = "0") -> StatusStep:
    def step(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, headers={"Retry-After": retry_after, "X-Progress": progress})

    return step
