"""A SMART on FHIR EHR for tests: an authorization server and a patient-bound FHIR API.

It plays the EHR side of SMART App Launch 2.x the way a real server does, so our SMART client is
tested against the protocol and not against our own assumptions. The shapes mirror the answers
captured from the SMART App Launcher (`shared/fixtures/smart/launcher/`):

- discovery at `{fhir_base}/.well-known/smart-configuration`, and the `oauth-uris` extension of
  `{fhir_base}/metadata` for clients that fall back to the CapabilityStatement;
- `GET {base}/auth/authorize`: authorization code flow with PKCE (S256 only), `aud` checked
  against the FHIR base, EHR launch (`launch` + scope `launch`) or standalone launch (scope
  `launch/patient`), auto-approved; errors redirected per RFC 6749 §4.1.2.1 once the
  redirect_uri is trusted, a 400 HTML page before that;
- `POST {base}/auth/token`: `authorization_code` and `refresh_token` grants; codes are single-use
  and live 60 s; confidential clients authenticate with `client_secret_basic` or
  `client_secret_post`; the answer carries `patient`, `encounter`, `need_patient_banner`,
  `smart_style_url`, `refresh_token` (for `offline_access`/`online_access`) and an RS256
  `id_token` (for `openid` + `fhirUser`) whose key is in `{base}/keys`; `fhirUser` is only in
  the id_token, as with the launcher;
- `POST {base}/auth/revoke` (RFC 7009);
- FHIR reads and searches from a Synthea bundle (through `FhirDouble`), each needing a live
  bearer token whose scopes allow it, and only for the launch's patient.

Two deliberate differences from the launcher: access and refresh tokens are opaque random
strings (the launcher's are HS256 JWTs the app must not read anyway), and a wrong PKCE verifier
answers 400 `invalid_grant` as RFC 6749 §5.2 says (the launcher answers 401).

Every request is recorded in `Simulator.requests` (path relative to `base_url`); the clock is
injected (`now`), so code and token expiry are deterministic.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from cds_service.fhir_double import FhirDouble

__all__ = [
    "CODE_LIFETIME",
    "FHIR_USER",
    "OAUTH_URIS",
    "RecordedRequest",
    "Simulator",
    "serve_in_thread",
]

CODE_LIFETIME = 60.0
FHIR_USER = "Practitioner/sim-practitioner"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SEARCHABLE = (
    "Observation",
    "Condition",
    "MedicationRequest",
    "AllergyIntolerance",
    "Encounter",
    "Immunization",
)
FHIR_JSON = "application/fhir+json"
#: The style document the launcher serves at `smart_style_url` (its sample values).
SMART_STYLE = {
    "color_background": "#edeae3",
    "color_error": "#9e2d2d",
    "color_highlight": "#69b5ce",
    "color_modal_backdrop": "",
    "color_success": "#498e49",
    "color_text": "#303030",
    "dim_border_radius": "6px",
    "dim_font_size": "13px",
    "dim_spacing_size": "20px",
    "font_family_body": "Georgia, Times, 'Times New Roman', serif",
    "font_family_heading": "'HelveticaNeue-Light', Helvetica, Arial, sans-serif",
}
_PKCE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_RESOURCE_SCOPE = re.compile(r"(patient|user|system)/([A-Za-z]+|\*)\.([a-z*]+)(\?.*)?")
_V2_PERMISSIONS = re.compile(r"c?r?u?d?s?")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the simulator received; `path` is relative to `base_url` (`/auth/token`)."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True)
class _LaunchContext:
    patient: str | None
    encounter: str | None = None
    need_patient_banner: bool = True
    app_context: str | None = None
    fhir_context: tuple[dict[str, Any], ...] = ()


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    context: _LaunchContext
    nonce: str | None
    issued_at: float
    used: bool = False
    grants: list[_Grant] = field(default_factory=list)


@dataclass
class _Grant:
    """What one code redemption authorized; its refresh token and access tokens hang off it."""

    client_id: str
    scope: str
    context: _LaunchContext
    refresh_token: str | None
    revoked: bool = False


@dataclass
class _AccessToken:
    grant: _Grant
    expires_at: float
    revoked: bool = False


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _operation_outcome(code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


def _reference_targets(value: Any) -> set[str]:
    refs = value if isinstance(value, list) else [value]
    out: set[str] = set()
    for ref in refs:
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            out.add(ref["reference"].rsplit("/", 1)[-1].removeprefix("urn:uuid:"))
    return out


class Simulator:
    """A SMART on FHIR EHR (authorization server + FHIR API) over one Synthea bundle."""

    def __init__(
        self,
        *,
        base_url: str,
        bundle: dict[str, Any],
        client_id: str = "cds-service-app",
        redirect_uris: list[str],
        client_secret: str | None = None,
        fhir_latency: float = 0.0,
        token_lifetime: int = 3600,
        now: Callable[[], float] = time.time,
        scopes_v2: bool = True,
        offer_revocation: bool = True,
        omit_smart_configuration: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.fhir_base = f"{self.base_url}/fhir"
        self.client_id = client_id
        self.redirect_uris = list(redirect_uris)
        self.client_secret = client_secret
        self.fhir_latency = fhir_latency
        self.token_lifetime = token_lifetime
        self.now = now
        self.scopes_v2 = scopes_v2
        self.offer_revocation = offer_revocation
        self.omit_smart_configuration = omit_smart_configuration
        self.fhir_user = FHIR_USER
        self.requests: list[RecordedRequest] = []
        self.revoked: list[str] = []
        #: RiskAssessments created through `POST {fhir}/RiskAssessment`, with the ids given.
        self.created: list[dict[str, Any]] = []
        #: When set, creates answer this (status, OperationOutcome diagnostics) instead.
        self.fail_creates: tuple[int, str] | None = None

        self.authorize_endpoint = f"{self.base_url}/auth/authorize"
        self.token_endpoint = f"{self.base_url}/auth/token"
        self.revocation_endpoint = f"{self.base_url}/auth/revoke"
        self.jwks_uri = f"{self.base_url}/keys"
        self.smart_style_url = f"{self.base_url}/smart-style.json"

        self._fhir = FhirDouble(
            (
                entry["resource"]
                for entry in bundle.get("entry") or []
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
            ),
            base_url=self.fhir_base,
            record=False,  # the simulator records requests itself
        )
        patients = self._fhir.resources("Patient")
        self.patient_id: str | None = patients[0].get("id") if patients else None

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        thumbprint = json.dumps(
            {"e": public["e"], "kty": "RSA", "n": public["n"]}, separators=(",", ":")
        )
        self.kid = (
            base64.urlsafe_b64encode(hashlib.sha256(thumbprint.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        self.jwks: dict[str, Any] = {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": self.kid,
                    "alg": "RS256",
                    "use": "sig",
                    "key_ops": ["verify"],
                    "n": public["n"],
                    "e": public["e"],
                }
            ]
        }

        self._launches: dict[str, _LaunchContext] = {}
        self._codes: dict[str, _Code] = {}
        self._refresh_tokens: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._lock = threading.Lock()
        self._prefix = urlsplit(self.base_url).path.rstrip("/")
        self.app = self._build_app()

    # -- test controls --------------------------------------------------------------------

    def launch_id(
        self,
        *,
        patient: str,
        encounter: str | None = None,
        app_context: str | None = None,
        need_patient_banner: bool = True,
        fhir_context: list[dict[str, Any]] | None = None,
    ) -> str:
        """Register an EHR launch context; returns the opaque `launch` value to send the app."""
        launch = secrets.token_urlsafe(24)
        self._launches[launch] = _LaunchContext(
            patient=patient,
            encounter=encounter,
            need_patient_banner=need_patient_banner,
            app_context=app_context,
            fhir_context=tuple(fhir_context or ()),
        )
        return launch

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (refresh tokens keep working)."""
        with self._lock:
            for token in self._access_tokens.values():
                token.expires_at = float("-inf")

    # -- documents ------------------------------------------------------------------------

    def smart_configuration(self) -> dict[str, Any]:
        resource_scopes = ["patient/*.read", "user/*.read"]
        if self.scopes_v2:
            resource_scopes = ["patient/*.rs", "user/*.rs", *resource_scopes]
        document: dict[str, Any] = {
            "issuer": self.fhir_base,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": self.authorize_endpoint,
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint": self.token_endpoint,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }
        if self.offer_revocation:
            document["revocation_endpoint"] = self.revocation_endpoint
        document |= {
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": [
                "openid",
                "profile",
                "fhirUser",
                "launch",
                "launch/patient",
                "launch/encounter",
                *resource_scopes,
                "offline_access",
                "online_access",
            ],
            "response_types_supported": ["code"],
            "capabilities": [
                "launch-ehr",
                "launch-standalone",
                "client-public",
                "client-confidential-symmetric",
                "sso-openid-connect",
                "context-passthrough-banner",
                "context-passthrough-style",
                "context-ehr-patient",
                "context-ehr-encounter",
                "context-standalone-patient",
                "context-standalone-encounter",
                "permission-offline",
                "permission-online",
                "permission-patient",
                "permission-user",
                "permission-v2" if self.scopes_v2 else "permission-v1",
            ],
        }
        return document

    def capability_statement(self) -> dict[str, Any]:
        uris = [
            {"url": "authorize", "valueUri": self.authorize_endpoint},
            {"url": "token", "valueUri": self.token_endpoint},
        ]
        if self.offer_revocation:
            uris.append({"url": "revoke", "valueUri": self.revocation_endpoint})
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-01-01",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "implementation": {"description": "SMART on FHIR EHR simulator", "url": self.fhir_base},
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "service": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/"
                                        "restful-security-service",
                                        "code": "SMART-on-FHIR",
                                    }
                                ]
                            }
                        ],
                        "extension": [{"url": OAUTH_URIS, "extension": uris}],
                    },
                    "resource": [
                        {"type": "Patient", "interaction": [{"code": "read"}]},
                        *(
                            {
                                "type": name,
                                "interaction": [{"code": "read"}, {"code": "search-type"}],
                                "searchParam": [{"name": "patient", "type": "reference"}],
                            }
                            for name in SEARCHABLE
                        ),
                    ],
                }
            ],
        }

    # -- the ASGI app ---------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        p = self._prefix
        routes: list[tuple[str, str, Callable[[Request], Any]]] = [
            ("GET", "/fhir/.well-known/smart-configuration", self._smart_configuration),
            ("GET", "/fhir/metadata", self._metadata),
            ("GET", "/auth/authorize", self._authorize),
            ("POST", "/auth/token", self._token),
            ("POST", "/auth/revoke", self._revoke),
            ("GET", "/keys", self._keys),
            ("GET", "/smart-style.json", self._style),
            ("GET", "/fhir/{resource_type}/{resource_id}", self._fhir_read),
            ("GET", "/fhir/{resource_type}", self._fhir_search),
            ("POST", "/fhir/RiskAssessment", self._fhir_create_risk_assessment),
        ]
        for method, path, endpoint in routes:
            app.add_api_route(p + path, endpoint, methods=[method], include_in_schema=False)
        app.add_api_route(
            "/{rest:path}",
            self._not_found,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            include_in_schema=False,
        )
        return app

    async def _record(self, request: Request) -> RecordedRequest:
        form: dict[str, str] = {}
        if request.method == "POST":
            body = await request.body()
            content_type = request.headers.get("content-type", "")
            if content_type.split(";")[0].strip() == "application/x-www-form-urlencoded":
                form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        path = request.url.path
        if self._prefix and path.startswith(self._prefix):
            path = path[len(self._prefix) :]
        recorded = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(parse_qsl(request.url.query, keep_blank_values=True)),
            form=form,
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        self.requests.append(recorded)
        return recorded

    async def _not_found(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse(_operation_outcome("not-found", "no such endpoint"), status_code=404)

    async def _smart_configuration(self, request: Request) -> Response:
        await self._record(request)
        if self.omit_smart_configuration:
            return JSONResponse(_operation_outcome("not-found", "not found"), status_code=404)
        return JSONResponse(self.smart_configuration())

    async def _metadata(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse(self.capability_statement(), media_type=FHIR_JSON)

    async def _keys(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse(self.jwks)

    async def _style(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse(SMART_STYLE)

    # -- authorize ------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        recorded = await self._record(request)
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        params = recorded.query
        repeated = sorted({name for name, _ in pairs if [n for n, _ in pairs].count(name) > 1})

        # Until client_id and redirect_uri are trusted, nothing may be redirected (§4.1.2.1).
        client_id = params.get("client_id")
        redirect_uri = params.get("redirect_uri")
        if "client_id" in repeated or "redirect_uri" in repeated:
            return self._error_page("client_id and redirect_uri must be given once")
        if not client_id:
            return self._error_page("client_id is missing")
        if client_id != self.client_id:
            return self._error_page(f"unknown client_id {client_id!r}")
        if not redirect_uri:
            return self._error_page("redirect_uri is missing")
        if redirect_uri not in self.redirect_uris:
            return self._error_page(f"redirect_uri {redirect_uri!r} is not registered")

        state = params.get("state")
        try:
            context, scope = self._check_authorization_request(params, repeated)
        except _OAuthError as exc:
            return self._redirect(
                redirect_uri, error=exc.error, error_description=exc.description, state=state
            )
        assert state is not None  # checked above
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _Code(
                client_id=client_id,
                redirect_uri=redirect_uri,
                code_challenge=params["code_challenge"],
                scope=scope,
                context=context,
                nonce=params.get("nonce"),
                issued_at=self.now(),
            )
        return self._redirect(redirect_uri, code=code, state=state)

    def _check_authorization_request(
        self, params: dict[str, str], repeated: list[str]
    ) -> tuple[_LaunchContext, str]:
        if repeated:
            raise _OAuthError("invalid_request", f"parameters given more than once: {repeated}")
        if params.get("response_type") != "code":
            raise _OAuthError("unsupported_response_type", "only response_type=code is supported")
        if not params.get("state"):
            raise _OAuthError("invalid_request", "state is required")
        aud = params.get("aud")
        if not aud:
            raise _OAuthError("invalid_request", "aud is required")
        if aud != self.fhir_base:
            raise _OAuthError("invalid_request", f"aud {aud!r} is not this FHIR server")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if not challenge:
            raise _OAuthError("invalid_request", "PKCE is required: code_challenge is missing")
        if method != "S256":
            raise _OAuthError(
                "invalid_request", f"code_challenge_method must be S256, not {method!r}"
            )
        if not _CHALLENGE.fullmatch(challenge):
            raise _OAuthError("invalid_request", "code_challenge is not a base64url SHA-256")
        scope = params.get("scope", "").strip()
        if not scope:
            raise _OAuthError("invalid_scope", "scope is required")
        scopes = scope.split()
        if not self.scopes_v2:
            v2 = [s for s in scopes if self._is_v2(s)]
            if v2:
                raise _OAuthError("invalid_scope", f"SMART v2 scopes are not supported: {v2}")

        launch = params.get("launch")
        if launch is not None:
            context = self._launches.get(launch)
            if context is None:
                raise _OAuthError("invalid_request", "unknown or expired launch")
            if "launch" not in scopes:
                raise _OAuthError("invalid_scope", "an EHR launch needs the 'launch' scope")
            return context, scope
        if "launch" in scopes:
            raise _OAuthError("invalid_request", "scope 'launch' without a launch parameter")
        if "launch/patient" in scopes:
            encounter = None
            if "launch/encounter" in scopes:
                encounter = self._latest_encounter()
            return _LaunchContext(patient=self.patient_id, encounter=encounter), scope
        return _LaunchContext(patient=None, need_patient_banner=False), scope

    @staticmethod
    def _is_v2(scope: str) -> bool:
        match = _RESOURCE_SCOPE.fullmatch(scope)
        if match is None:
            return False
        permissions = match.group(3)
        return match.group(4) is not None or permissions not in ("read", "write", "*")

    def _latest_encounter(self) -> str | None:
        encounters = [
            e
            for e in self._fhir.resources("Encounter")
            if self.patient_id in _reference_targets(e.get("subject"))
        ]
        encounters.sort(key=lambda e: str((e.get("period") or {}).get("start", "")))
        return encounters[-1].get("id") if encounters else None

    @staticmethod
    def _error_page(message: str) -> Response:
        body = (
            "<!doctype html><title>Authorization error</title>"
            f"<h1>invalid_request</h1><p>{html.escape(message)}</p>"
        )
        return HTMLResponse(body, status_code=400)

    @staticmethod
    def _redirect(redirect_uri: str, **params: str | None) -> Response:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return RedirectResponse(f"{redirect_uri}{separator}{query}", status_code=302)

    # -- token ----------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        recorded = await self._record(request)
        try:
            body = self._token_answer(recorded)
        except _OAuthError as exc:
            return self._oauth_error(exc)
        return JSONResponse(body, headers=_NO_STORE)

    def _oauth_error(self, exc: _OAuthError) -> Response:
        headers = dict(_NO_STORE)
        if exc.status == 401:
            headers["WWW-Authenticate"] = f'Basic realm="{self.base_url}"'
        return JSONResponse(
            {"error": exc.error, "error_description": exc.description},
            status_code=exc.status,
            headers=headers,
        )

    def _authenticate_client(self, recorded: RecordedRequest) -> str | None:
        """The client_id the request authenticated as (None for a public client's request)."""
        form = recorded.form
        authorization = recorded.headers.get("authorization", "")
        basic: tuple[str, str] | None = None
        if authorization:
            kind, _, value = authorization.partition(" ")
            if kind.lower() != "basic":
                raise _OAuthError("invalid_client", "unsupported client authentication", 401)
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError) as exc:
                raise _OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
            user, colon, password = decoded.partition(":")
            if not colon:
                raise _OAuthError("invalid_client", "malformed Basic credentials", 401)
            basic = (unquote_plus(user), unquote_plus(password))
        if basic and "client_secret" in form:
            raise _OAuthError("invalid_request", "more than one client authentication method")

        if self.client_secret is None:
            if basic or "client_secret" in form:
                raise _OAuthError("invalid_client", "this client is public: no secret", 401)
            return None
        if basic:
            client_id, secret = basic
        elif "client_secret" in form:
            client_id, secret = form.get("client_id", ""), form["client_secret"]
        else:
            raise _OAuthError("invalid_client", "client authentication is required", 401)
        if client_id != self.client_id or not secrets.compare_digest(
            secret.encode(), self.client_secret.encode()
        ):
            raise _OAuthError("invalid_client", "client authentication failed", 401)
        if form.get("client_id", client_id) != client_id:
            raise _OAuthError("invalid_client", "client_id does not match the credentials", 401)
        return client_id

    def _token_answer(self, recorded: RecordedRequest) -> dict[str, Any]:
        if recorded.headers.get("content-type", "").split(";")[0].strip() != (
            "application/x-www-form-urlencoded"
        ):
            raise _OAuthError(
                "invalid_request", "the body must be application/x-www-form-urlencoded"
            )
        form = recorded.form
        grant_type = form.get("grant_type")
        if grant_type not in ("authorization_code", "refresh_token"):
            raise _OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} not supported")
        authenticated = self._authenticate_client(recorded)
        client_id = authenticated or form.get("client_id")
        with self._lock:
            if grant_type == "authorization_code":
                return self._redeem_code(form, client_id)
            return self._refresh(form, client_id)

    def _redeem_code(self, form: dict[str, str], client_id: str | None) -> dict[str, Any]:
        if not client_id:
            raise _OAuthError("invalid_request", "client_id is required")
        code_value = form.get("code")
        if not code_value:
            raise _OAuthError("invalid_request", "code is required")
        code = self._codes.get(code_value)
        if code is None:
            raise _OAuthError("invalid_grant", "unknown authorization code")
        if code.used:
            # RFC 6749 §4.1.2: a replayed code revokes what it was exchanged for.
            for grant in code.grants:
                self._revoke_grant(grant)
            raise _OAuthError("invalid_grant", "authorization code already used")
        code.used = True
        if self.now() - code.issued_at > CODE_LIFETIME:
            raise _OAuthError("invalid_grant", "authorization code expired")
        if client_id != code.client_id:
            raise _OAuthError("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != code.redirect_uri:
            raise _OAuthError("invalid_grant", "redirect_uri does not match the authorization")
        verifier = form.get("code_verifier")
        if not verifier:
            raise _OAuthError("invalid_grant", "PKCE code_verifier is required")
        if not _PKCE.fullmatch(verifier):
            raise _OAuthError("invalid_grant", "malformed PKCE code_verifier")
        computed = _s256(verifier)
        if not secrets.compare_digest(computed, code.code_challenge):
            raise _OAuthError(
                "invalid_grant",
                f"Invalid grant or Invalid PKCE Verifier, {computed!r} vs {code.code_challenge!r}.",
            )
        scopes = code.scope.split()
        refresh = None
        if "offline_access" in scopes or "online_access" in scopes:
            refresh = secrets.token_urlsafe(32)
        grant = _Grant(code.client_id, code.scope, code.context, refresh)
        code.grants.append(grant)
        if refresh:
            self._refresh_tokens[refresh] = grant
        return self._issue(grant, nonce=code.nonce)

    def _refresh(self, form: dict[str, str], client_id: str | None) -> dict[str, Any]:
        value = form.get("refresh_token")
        if not value:
            raise _OAuthError("invalid_request", "refresh_token is required")
        grant = self._refresh_tokens.get(value)
        if grant is None or grant.revoked:
            raise _OAuthError("invalid_grant", "unknown or revoked refresh token")
        if client_id is not None and client_id != grant.client_id:
            raise _OAuthError("invalid_grant", "the refresh token was issued to another client")
        requested = form.get("scope")
        if requested is not None:
            extra = set(requested.split()) - set(grant.scope.split())
            if extra:
                raise _OAuthError("invalid_scope", f"scopes not granted before: {sorted(extra)}")
            grant = _Grant(grant.client_id, requested, grant.context, grant.refresh_token)
        return self._issue(grant, nonce=None)

    def _issue(self, grant: _Grant, *, nonce: str | None) -> dict[str, Any]:
        now = self.now()
        access = secrets.token_urlsafe(32)
        self._access_tokens[access] = _AccessToken(grant, now + self.token_lifetime)
        scopes = grant.scope.split()
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "scope": grant.scope,
        }
        if "openid" in scopes and ("fhirUser" in scopes or "profile" in scopes):
            body["id_token"] = self._id_token(grant.client_id, nonce, now)
        if grant.refresh_token:
            body["refresh_token"] = grant.refresh_token
        context = grant.context
        body["need_patient_banner"] = context.need_patient_banner
        body["smart_style_url"] = self.smart_style_url
        if context.patient:
            body["patient"] = context.patient
        if context.encounter:
            body["encounter"] = context.encounter
        if context.fhir_context:
            body["fhirContext"] = [dict(item) for item in context.fhir_context]
        if context.app_context is not None:
            body["appContext"] = context.app_context
        return body

    def _id_token(self, client_id: str, nonce: str | None, now: float) -> str:
        claims: dict[str, Any] = {
            "profile": self.fhir_user,
            "fhirUser": self.fhir_user,
            "aud": client_id,
            "sub": hashlib.sha256(self.fhir_user.encode()).hexdigest(),
            "iss": self.fhir_base,
            "iat": int(now),
            "exp": int(now) + self.token_lifetime,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    # -- revoke ---------------------------------------------------------------------------

    async def _revoke(self, request: Request) -> Response:
        recorded = await self._record(request)
        if not self.offer_revocation:
            return JSONResponse(_operation_outcome("not-found", "not found"), status_code=404)
        try:
            self._authenticate_client(recorded)
            token = recorded.form.get("token")
            if not token:
                raise _OAuthError("invalid_request", "token is required")
        except _OAuthError as exc:
            return self._oauth_error(exc)
        with self._lock:
            self.revoked.append(token)
            if token in self._access_tokens:
                self._access_tokens[token].revoked = True
            elif token in self._refresh_tokens:
                self._revoke_grant(self._refresh_tokens[token])
        return Response(status_code=200, headers=_NO_STORE)

    def _revoke_grant(self, grant: _Grant) -> None:
        grant.revoked = True
        for access in self._access_tokens.values():
            if access.grant is grant or (
                grant.refresh_token and access.grant.refresh_token == grant.refresh_token
            ):
                access.revoked = True

    # -- FHIR -----------------------------------------------------------------------------

    def _fhir_error(
        self, status: int, code: str, diagnostics: str, bearer_error: str | None = None
    ) -> Response:
        headers = {}
        if status in (401, 403):
            challenge = f'Bearer realm="{self.fhir_base}"'
            if bearer_error:
                challenge += f', error="{bearer_error}", error_description="{diagnostics}"'
            headers["WWW-Authenticate"] = challenge
        return JSONResponse(
            _operation_outcome(code, diagnostics),
            status_code=status,
            media_type=FHIR_JSON,
            headers=headers,
        )

    def _bearer(self, recorded: RecordedRequest) -> _AccessToken | Response:
        authorization = recorded.headers.get("authorization", "")
        kind, _, value = authorization.partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            return self._fhir_error(401, "login", "a bearer token is required")
        token = self._access_tokens.get(value.strip())
        if token is None:
            return self._fhir_error(401, "login", "unknown access token", "invalid_token")
        if token.revoked or token.grant.revoked:
            return self._fhir_error(401, "login", "the access token was revoked", "invalid_token")
        if self.now() >= token.expires_at:
            return self._fhir_error(401, "expired", "the access token expired", "invalid_token")
        return token

    def _permits(self, token: _AccessToken, resource_type: str, operation: str) -> bool:
        for scope in token.grant.scope.split():
            match = _RESOURCE_SCOPE.fullmatch(scope)
            if match is None or match.group(2) not in ("*", resource_type):
                continue
            permissions = match.group(3)
            if permissions == "*" or (permissions == "read" and operation in "rs"):
                return True
            if permissions == "write" and operation in "cud":
                return True
            if (
                self.scopes_v2
                and permissions
                and _V2_PERMISSIONS.fullmatch(permissions)
                and operation in permissions
            ):
                return True
        return False

    async def _fhir_read(self, request: Request) -> Response:
        recorded = await self._record(request)
        resource_type = request.path_params["resource_type"]
        resource_id = request.path_params["resource_id"]
        token = self._bearer(recorded)
        if isinstance(token, Response):
            return token
        await asyncio.sleep(self.fhir_latency)
        if resource_type not in ("Patient", *SEARCHABLE):
            return self._fhir_error(404, "not-supported", f"{resource_type} is not served here")
        if not self._permits(token, resource_type, "r"):
            return self._fhir_error(
                403, "forbidden", f"no scope allows reading {resource_type}", "insufficient_scope"
            )
        patient = token.grant.context.patient
        if resource_type == "Patient" and resource_id != patient:
            return self._fhir_error(403, "forbidden", "not the patient of this launch")
        resource = self._fhir.get(f"{resource_type}/{resource_id}")
        if resource is None:
            return self._fhir_error(404, "not-found", f"{resource_type}/{resource_id} not found")
        if resource_type != "Patient":
            owners = _reference_targets(resource.get("subject")) | _reference_targets(
                resource.get("patient")
            )
            if patient not in owners:
                return self._fhir_error(403, "forbidden", "not the patient of this launch")
        return JSONResponse(resource, media_type=FHIR_JSON)

    async def _fhir_search(self, request: Request) -> Response:
        recorded = await self._record(request)
        resource_type = request.path_params["resource_type"]
        token = self._bearer(recorded)
        if isinstance(token, Response):
            return token
        await asyncio.sleep(self.fhir_latency)
        if resource_type not in SEARCHABLE:
            return self._fhir_error(404, "not-supported", f"{resource_type} is not searchable")
        if not self._permits(token, resource_type, "s"):
            return self._fhir_error(
                403, "forbidden", f"no scope allows searching {resource_type}", "insufficient_scope"
            )
        patient = token.grant.context.patient
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        targets = [
            value
            for name, value in pairs
            if name.split(":", 1)[0] in ("patient", "subject")
            for value in value.split(",")
        ]
        if not targets:
            return self._fhir_error(403, "forbidden", "searches must name the launch's patient")
        if patient is None or any(t.rsplit("/", 1)[-1] != patient for t in targets):
            return self._fhir_error(403, "forbidden", "not the patient of this launch")
        status, answer = self._fhir.answer(f"{resource_type}?{request.url.query}")
        return JSONResponse(answer, status_code=status, media_type=FHIR_JSON)

    async def _fhir_create_risk_assessment(self, request: Request) -> Response:
        """A create, as a FHIR server checks it: token and scope, the launch's patient, the
        body a RiskAssessment; 201 with Location and the stored resource."""
        recorded = await self._record(request)
        token = self._bearer(recorded)
        if isinstance(token, Response):
            return token
        await asyncio.sleep(self.fhir_latency)
        if not self._permits(token, "RiskAssessment", "c"):
            return self._fhir_error(
                403, "forbidden", "no scope allows creating RiskAssessment", "insufficient_scope"
            )
        if self.fail_creates is not None:
            status, diagnostics = self.fail_creates
            return self._fhir_error(status, "processing", diagnostics)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._fhir_error(400, "invalid", "the body is not JSON")
        if not isinstance(body, dict) or body.get("resourceType") != "RiskAssessment":
            return self._fhir_error(400, "invalid", "the body is not a RiskAssessment")
        subject = (body.get("subject") or {}).get("reference")
        if subject != f"Patient/{token.grant.context.patient}":
            return self._fhir_error(403, "forbidden", "not the patient of this launch")
        created = {**body, "id": f"ra-{len(self.created) + 1}"}
        self.created.append(created)
        location = f"{self.fhir_base}/RiskAssessment/{created['id']}/_history/1"
        return JSONResponse(
            created, status_code=201, media_type=FHIR_JSON, headers={"Location": location}
        )


def serve_in_thread(sim: Simulator, port: int) -> Callable[[], None]:
    """Serve `sim.app` with uvicorn on 127.0.0.1:`port` in a daemon thread; returns `stop()`.

    Returns once the server accepts connections. Access logs are off and uvicorn's own logging
    configuration is not installed (the test session's log handlers stay as they are).
    """
    config = uvicorn.Config(
        sim.app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"smart-simulator-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10.0
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the simulator could not start on 127.0.0.1:{port}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the simulator did not start on 127.0.0.1:{port} within 10 s")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10.0)
        if thread.is_alive():
            raise RuntimeError("the simulator did not stop within 10 s")

    return stop
