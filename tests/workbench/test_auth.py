"""Signing in to the workbench with OpenID Connect, against an identity provider double (the
provider is outside our control, so `httpx.MockTransport`): discovery, keys, a token endpoint
that checks the code, the PKCE verifier and the client's authentication, and id_tokens signed with
keys made here. Routes protected by `Reader` and `Author` come from a small router of this module.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds_service.config import Settings, load_settings
from cds_service.exceptions import ConfigurationError
from cds_service.main import create_app
from cds_service.services.builtin import builtin_services
from cds_service.smart.sessions import SessionStore
from cds_service.workbench.auth import Author, Reader, WorkbenchUser
from cds_service.workbench.login import SignIn, safe_next
from cds_service.workbench.sessions import COOKIE, LOGIN_COOKIE, MAX_SESSION_SECONDS

BASE = "https://cds.example.org"
ISSUER = "https://login.example.org/realms/staff"
OIDC = f"{ISSUER}/protocol/openid-connect"
CLIENT_ID = "cds-workbench"
SECRET = "client-secret-of-the-workbench"
REDIS_URL = "redis://127.0.0.1:6379/12"
# This module flushes a Redis database of its own (`make pytest` keeps a module's tests on one
# worker).

ANA = "ana@example.org"  # an author by email
ROB = "rob@example.org"  # a reader by email

# -- the routes under test ----------------------------------------------------------------------

router = APIRouter()


def _who(user: WorkbenchUser) -> dict[str, Any]:
    return {"subject": user.subject, "name": user.name, "role": user.role, "email": user.email}


@router.get("/workbench/t/read")
async def read_page(user: Reader) -> dict[str, Any]:
    return _who(user)


@router.get("/workbench/t/write")
async def write_page(user: Author) -> dict[str, Any]:
    return _who(user)


@router.get("/workbench/api/t/read")
async def read_api(user: Reader) -> dict[str, Any]:
    return {**_who(user), "csrf": user.csrf}


@router.post("/workbench/api/t/write")
async def write_api(user: Author) -> dict[str, Any]:
    return _who(user)


# -- the identity provider double ---------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    sub: str
    email: str | None = None
    groups: tuple[str, ...] = ()
    name: str = "Sam Example"
    email_verified: bool = True


@dataclass
class Keys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    rsa_kid: str = "rsa-1"

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)
        return {
            "keys": [
                {**rsa_jwk, "kid": self.rsa_kid, "use": "sig", "alg": "RS256"},
                {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"},
            ]
        }


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP256R1()))


Edit = Callable[[dict[str, Any]], None]


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Provider:
    """An OpenID provider (Keycloak-shaped URLs) for one registered client."""

    keys: Keys
    secret: str | None = SECRET
    issuer_in_document: str = ISSUER
    token_status: int = 200
    edit_claims: Edit | None = None
    sign: Callable[[Keys, dict[str, Any]], str] | None = None
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = str(request.url.copy_with(query=None))
        self.hits[path] = self.hits.get(path, 0) + 1
        if path == f"{ISSUER}/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": self.issuer_in_document,
                    "authorization_endpoint": f"{OIDC}/auth",
                    "token_endpoint": f"{OIDC}/token",
                    "jwks_uri": f"{OIDC}/certs",
                    "code_challenge_methods_supported": ["plain", "S256"],
                },
            )
        if path == f"{OIDC}/certs":
            return httpx.Response(200, json=self.keys.jwks())
        if path == f"{OIDC}/token" and request.method == "POST":
            return self._token(request)
        return httpx.Response(404)

    def authorize(self, location: str, account: Account) -> dict[str, str]:
        """The browser at the authorization endpoint: checks what we sent, answers a code."""
        url = urlsplit(location)
        assert f"{url.scheme}://{url.netloc}{url.path}" == f"{OIDC}/auth"
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert query["response_type"] == "code"
        assert query["client_id"] == CLIENT_ID
        assert query["redirect_uri"] == f"{BASE}/workbench/callback"
        assert query["code_challenge_method"] == "S256"
        assert "openid" in query["scope"].split()
        assert query["state"] and query["nonce"]
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "account": account,
            "challenge": query["code_challenge"],
            "nonce": query["nonce"],
            "redirect_uri": query["redirect_uri"],
        }
        return {"code": code, "state": query["state"]}

    def _client_ok(self, request: httpx.Request, form: dict[str, str]) -> bool:
        sent: str | None = request.headers.get("authorization")
        if self.secret is None:
            return sent is None and form.get("client_id") == CLIENT_ID
        pair = base64.b64encode(f"{CLIENT_ID}:{self.secret}".encode()).decode()
        return sent == f"Basic {pair}"

    def _token(self, request: httpx.Request) -> httpx.Response:
        if self.token_status != 200:
            return httpx.Response(self.token_status, text="<html>down</html>")
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if not self._client_ok(request, form):
            return httpx.Response(401, json={"error": "invalid_client"})
        grant = self.codes.pop(form.get("code", ""), None)
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or form.get("redirect_uri") != grant["redirect_uri"]
            or _challenge(form.get("code_verifier", "")) != grant["challenge"]
        ):
            return httpx.Response(400, json={"error": "invalid_grant"})
        account: Account = grant["account"]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "sub": account.sub,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            "name": account.name,
            "groups": list(account.groups),
        }
        if account.email is not None:
            claims.update(email=account.email, email_verified=account.email_verified)
        if self.edit_claims is not None:
            self.edit_claims(claims)
        if self.sign is not None:
            id_token = self.sign(self.keys, claims)
        else:
            headers = {"kid": self.keys.rsa_kid}
            id_token = jwt.encode(claims, self.keys.rsa, algorithm="RS256", headers=headers)
        self.issued.append(id_token)
        return httpx.Response(
            200,
            json={
                "access_token": "opaque-access-token-never-kept",
                "token_type": "Bearer",
                "id_token": id_token,
                "expires_in": 300,
            },
        )


@pytest.fixture
def provider(keys: Keys) -> Provider:
    return Provider(keys)


# -- apps ---------------------------------------------------------------------------------------


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path}/wb.db",
        "workbench_auth": "oidc",  # whatever the test environment sets
        "public_base_url": BASE,
        "workbench_oidc_issuer": ISSUER,
        "workbench_oidc_client_id": CLIENT_ID,
        "workbench_oidc_client_secret": SECRET,
        "workbench_authors": [ANA, "group:cds-authors"],
        "workbench_readers": ["group:clinicians", ROB],
    }
    values.update(overrides)
    return Settings(**values)


def build(settings: Settings, provider: Provider | None) -> FastAPI:
    transport = httpx.MockTransport(provider.handle) if provider is not None else None
    app = create_app(settings, services=builtin_services(), oidc_transport=transport)
    app.include_router(router)
    return app


Open = Callable[..., TestClient]


@pytest.fixture
def open_app(tmp_path: Path, provider: Provider) -> Iterator[Open]:
    """Start an app (its lifespan running) with these settings overrides."""
    running: list[TestClient] = []

    def start(settings: Settings | None = None, **overrides: Any) -> TestClient:
        app = build(settings or settings_for(tmp_path, **overrides), provider)
        client = TestClient(app, base_url=BASE, raise_server_exceptions=False)
        client.__enter__()
        running.append(client)
        return client

    yield start
    for client in running:
        client.__exit__(None, None, None)


@pytest.fixture
def client(open_app: Open) -> TestClient:
    return open_app()


def signin_of(client: TestClient) -> SignIn:
    found: SignIn = client.app.state.workbench_signin  # type: ignore[attr-defined]
    return found


def start_login(client: TestClient, next_path: str = "/workbench/t/read") -> httpx.Response:
    response: httpx.Response = client.get(
        "/workbench/login", params={"next": next_path}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return response


def sign_in(
    client: TestClient, provider: Provider, account: Account, next_path: str = "/workbench/t/read"
) -> httpx.Response:
    params = provider.authorize(start_login(client, next_path).headers["location"], account)
    response: httpx.Response = client.get(
        "/workbench/callback", params=params, follow_redirects=False
    )
    return response


def cookies_set(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the whole header, attributes and all)."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def session_cookie(response: httpx.Response, name: str = COOKIE) -> str:
    return cookies_set(response)[name].split(";", 1)[0].split("=", 1)[1]


def as_browser_with(client: TestClient, session_id: str) -> dict[str, str]:
    """Headers of another browser holding this session id (the client's own jar emptied)."""
    client.cookies.clear()
    return {"Cookie": f"{COOKIE}={session_id}"}


# -- signing in ---------------------------------------------------------------------------------


def test_sign_in_starts_a_session_that_reader_routes_accept(
    client: TestClient, provider: Provider
) -> None:
    login = start_login(client, "/workbench/t/read?x=1")
    assert cookies_set(login)[LOGIN_COOKIE].lower().count("path=/workbench/callback") == 1
    params = provider.authorize(login.headers["location"], Account("u-rob", ROB, name="Rob"))
    done = client.get("/workbench/callback", params=params, follow_redirects=False)

    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/workbench/t/read?x=1"
    cookie = cookies_set(done)[COOKIE].lower()
    for attribute in ("httponly", "secure", "samesite=lax", "path=/workbench"):
        assert attribute in cookie
    assert "max-age=0" in cookies_set(done)[LOGIN_COOKIE].lower()  # the sign-in is used up
    page = client.get("/workbench/t/read")
    assert page.status_code == 200
    assert page.json() == {"subject": "u-rob", "name": "Rob", "role": "reader", "email": ROB}
    assert client.get("/workbench/api/t/read").status_code == 200
    assert provider.hits[f"{ISSUER}/.well-known/openid-configuration"] == 1  # cached


def test_the_session_keeps_no_token(client: TestClient, provider: Provider) -> None:
    done = sign_in(client, provider, Account("u-ana", ANA))
    store = signin_of(client).sessions
    assert store is not None
    stored = store.store._local[session_cookie(done)][1]
    assert set(stored) == {"kind", "subject", "name", "email", "role", "csrf", "started", "policy"}
    assert provider.issued[0] not in repr(stored)


@pytest.mark.parametrize(
    ("account", "role"),
    [
        (Account("u1", ANA), "author"),
        (Account("u2", "Ana@Example.ORG"), "author"),  # emails compare case-insensitively
        (Account("u3", "x@example.org", groups=("cds-authors",)), "author"),
        (Account("u4", None, groups=("clinicians", "cds-authors")), "author"),
        (Account("u5", ROB), "reader"),
        (Account("u6", None, groups=("clinicians",)), "reader"),
    ],
    ids=["email", "email-case", "group", "groups-both", "reader-email", "reader-group"],
)
def test_roles_by_email_or_group(
    client: TestClient, provider: Provider, account: Account, role: str
) -> None:
    assert sign_in(client, provider, account).status_code == 303
    assert client.get("/workbench/api/t/read").json()["role"] == role
    write = client.post(
        "/workbench/api/t/write",
        headers={"X-CSRF-Token": client.get("/workbench/api/t/read").json()["csrf"]},
    )
    assert write.status_code == (200 if role == "author" else 403)


@pytest.mark.parametrize(
    "account",
    [
        Account("u7", "eve@example.org", groups=("patients",)),
        Account("u8", ANA, email_verified=False),  # an unverified address grants nothing
        Account("u9"),
    ],
    ids=["unlisted", "unverified-email", "nothing"],
)
def test_an_account_without_a_role_is_refused_and_gets_no_session(
    client: TestClient, provider: Provider, account: Account
) -> None:
    done = sign_in(client, provider, account)
    assert done.status_code == 403
    assert "Your account is not allowed" in done.text
    assert COOKIE not in cookies_set(done)
    assert client.get("/workbench/api/t/read").status_code == 401


def test_a_public_client_signs_in_with_pkce_alone(
    open_app: Open, tmp_path: Path, provider: Provider
) -> None:
    provider.secret = None
    client = open_app(settings_for(tmp_path, workbench_oidc_client_secret=None))
    assert sign_in(client, provider, Account("u-ana", ANA)).status_code == 303
    assert client.get("/workbench/t/write").json()["role"] == "author"


def test_a_confidential_client_must_authenticate(
    open_app: Open, tmp_path: Path, provider: Provider
) -> None:
    client = open_app(settings_for(tmp_path, workbench_oidc_client_secret="another-secret"))
    done = sign_in(client, provider, Account("u-ana", ANA))
    assert done.status_code == 502
    assert "invalid_client" in done.text


# -- refusals on the way ------------------------------------------------------------------------


def _claims(**changes: Any) -> Edit:
    """Claims set when the token is made (a callable value is called then: times relative to
    now must not be computed at collection, minutes before a long suite reaches the test)."""

    def edit(claims: dict[str, Any]) -> None:
        claims.update({k: v() if callable(v) else v for k, v in changes.items()})

    return edit


def _drop(name: str) -> Edit:
    return lambda claims: claims.pop(name)


def _none(keys: Keys, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, "", algorithm="none")


def _hs256(keys: Keys, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, "a-shared-secret-that-nobody-else-has-32+", algorithm="HS256")


def _unknown_kid(keys: Keys, claims: dict[str, Any]) -> str:
    other = rsa.generate_private_key(65537, 2048)
    return jwt.encode(claims, other, algorithm="RS256", headers={"kid": "rsa-2"})


def _wrong_key_same_kid(keys: Keys, claims: dict[str, Any]) -> str:
    other = rsa.generate_private_key(65537, 2048)
    return jwt.encode(claims, other, algorithm="RS256", headers={"kid": "rsa-1"})


def _es256(keys: Keys, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, keys.ec, algorithm="ES256", headers={"kid": "ec-1"})


ID_TOKEN_FAILURES: list[tuple[str, Edit | None, Any, str]] = [
    ("nonce", _claims(nonce="another-nonce"), None, "nonce"),
    ("no-nonce", _drop("nonce"), None, "nonce"),
    ("aud", _claims(aud="another-client"), None, "another client"),
    ("aud-list-no-azp", _claims(aud=[CLIENT_ID, "other"]), None, "several audiences"),
    ("iss", _claims(iss="https://evil.example.org/realms/staff"), None, "another issuer"),
    ("expired", _claims(exp=lambda: int(time.time()) - 600), None, "expired"),
    ("future-iat", _claims(iat=lambda: int(time.time()) + 600), None, "not valid yet"),
    ("no-sub", _drop("sub"), None, "no sub claim"),
    ("alg-none", None, _none, "algorithm"),
    ("hs256", None, _hs256, "algorithm"),
    ("unknown-kid", None, _unknown_kid, "does not publish"),
    ("bad-signature", None, _wrong_key_same_kid, "signature"),
]


@pytest.mark.parametrize(
    ("edit", "sign", "says"),
    [case[1:] for case in ID_TOKEN_FAILURES],
    ids=[case[0] for case in ID_TOKEN_FAILURES],
)
def test_an_id_token_that_does_not_verify_is_refused(
    client: TestClient,
    provider: Provider,
    caplog: pytest.LogCaptureFixture,
    edit: Edit | None,
    sign: Any,
    says: str,
) -> None:
    provider.edit_claims, provider.sign = edit, sign
    caplog.set_level("DEBUG")
    done = sign_in(client, provider, Account("u-ana", ANA))
    assert done.status_code == 502, done.text
    assert says in done.text
    assert COOKIE not in cookies_set(done)
    assert client.get("/workbench/api/t/read").status_code == 401
    for secret in (provider.issued[0], ANA):
        assert secret not in done.text and secret not in caplog.text


def test_es256_tokens_and_a_key_rotation_are_accepted(
    client: TestClient, provider: Provider, keys: Keys
) -> None:
    provider.sign = _es256
    assert sign_in(client, provider, Account("u-ana", ANA)).status_code == 303
    rotated = Keys(rsa.generate_private_key(65537, 2048), keys.ec, rsa_kid="rsa-2")
    provider.keys = rotated
    provider.sign = None
    signin = signin_of(client)
    assert signin.oidc is not None
    signin.oidc.clock = lambda: time.time() + 31  # past the refetch pause
    client.cookies.clear()
    assert sign_in(client, provider, Account("u-ana", ANA)).status_code == 303
    assert provider.hits[f"{OIDC}/certs"] == 2


def test_a_wrong_state_is_refused(client: TestClient, provider: Provider) -> None:
    params = provider.authorize(start_login(client).headers["location"], Account("u-ana", ANA))
    done = client.get(
        "/workbench/callback", params={**params, "state": "forged"}, follow_redirects=False
    )
    assert done.status_code == 400
    assert "state does not match" in done.text
    again = client.get("/workbench/callback", params=params, follow_redirects=False)
    assert again.status_code == 400  # the sign-in was used up by the failed attempt
    assert "expired" in again.text


def test_a_callback_without_a_sign_in_or_a_late_one_is_refused(
    client: TestClient, provider: Provider
) -> None:
    alone = client.get("/workbench/callback", params={"code": "c", "state": "s"})
    assert alone.status_code == 400
    assert "expired" in alone.text
    params = provider.authorize(start_login(client).headers["location"], Account("u-ana", ANA))
    sessions = signin_of(client).sessions
    assert sessions is not None
    sessions.clock = lambda: time.time() + 601
    late = client.get("/workbench/callback", params=params, follow_redirects=False)
    assert late.status_code == 400
    assert "10 minutes" in late.text


def test_a_replayed_callback_is_refused(client: TestClient, provider: Provider) -> None:
    params = provider.authorize(start_login(client).headers["location"], Account("u-ana", ANA))
    assert client.get("/workbench/callback", params=params, follow_redirects=False).is_redirect
    replay = client.get("/workbench/callback", params=params, follow_redirects=False)
    assert replay.status_code == 400


@pytest.mark.parametrize(
    ("error", "status", "shown"),
    [
        ("access_denied", 400, "(access_denied)"),
        ("temporarily_unavailable", 502, "(temporarily_unavailable)"),
        ("<script>alert(1)</script>", 400, "(unknown)"),
    ],
)
def test_an_error_from_the_provider_is_a_page(
    client: TestClient, provider: Provider, error: str, status: int, shown: str
) -> None:
    state = provider.authorize(start_login(client).headers["location"], Account("u", ANA))["state"]
    done = client.get(
        "/workbench/callback",
        params={"error": error, "error_description": "Call +1 555 0100 now", "state": state},
    )
    assert done.status_code == status
    assert shown in done.text
    assert "<script>" not in done.text and "555" not in done.text


def test_the_token_endpoint_failing_is_a_502(client: TestClient, provider: Provider) -> None:
    provider.token_status = 500
    done = sign_in(client, provider, Account("u-ana", ANA))
    assert done.status_code == 502
    assert "HTTP 500" in done.text
    assert "text/html" in done.headers["content-type"]


def test_the_token_endpoint_unreachable_is_a_502(
    open_app: Open, tmp_path: Path, provider: Provider
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            raise httpx.ConnectTimeout("no answer", request=request)
        return provider.handle(request)

    app = build(settings_for(tmp_path), None)
    app.state.workbench_signin._transport = httpx.MockTransport(handle)
    with TestClient(app, base_url=BASE) as client:
        done = sign_in(client, provider, Account("u-ana", ANA))
    assert done.status_code == 502
    assert "could not be reached (ConnectTimeout)" in done.text


def test_a_code_the_provider_refuses_is_a_400(client: TestClient, provider: Provider) -> None:
    params = provider.authorize(start_login(client).headers["location"], Account("u-ana", ANA))
    done = client.get("/workbench/callback", params={**params, "code": "not-a-code"})
    assert done.status_code == 400
    assert "invalid_grant" in done.text


def test_a_provider_naming_another_issuer_is_refused(
    client: TestClient, provider: Provider
) -> None:
    provider.issuer_in_document = f"{ISSUER}/"
    login = client.get("/workbench/login", follow_redirects=False)
    assert login.status_code == 502
    assert "another issuer" in login.text


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/workbench",
        "//evil.example/workbench",
        "/\\evil.example",
        "/workbench/../smart/app",
        "/workbench/%2e%2e/smart/app",
        "/smart/app",
        "workbench/rules",
        "/workbench\t/rules",
    ],
)
def test_next_must_be_a_workbench_path(client: TestClient, target: str) -> None:
    login = client.get("/workbench/login", params={"next": target}, follow_redirects=False)
    assert login.status_code == 400
    assert "location" not in login.headers
    assert safe_next(target) is None


def test_next_keeps_a_workbench_path_and_never_loops() -> None:
    assert safe_next("/workbench") == "/workbench"
    assert safe_next("/workbench/rules/x?days=7#top") == "/workbench/rules/x?days=7"
    assert safe_next("/workbench/login?next=/workbench") == "/workbench"
    assert safe_next("/workbench/logout") == "/workbench"


def test_signing_in_again_goes_straight_on(client: TestClient, provider: Provider) -> None:
    sign_in(client, provider, Account("u-ana", ANA))
    again = client.get("/workbench/login", params={"next": "/workbench/t/write"})
    assert again.status_code == 200
    assert again.json()["role"] == "author"


# -- the dependencies ---------------------------------------------------------------------------


def test_without_a_session_the_api_answers_401_and_pages_redirect(client: TestClient) -> None:
    api = client.get("/workbench/api/t/read")
    assert api.status_code == 401
    outcome = api.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"
    page = client.get("/workbench/t/read?days=7", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/workbench/login?next=%2Fworkbench%2Ft%2Fread%3Fdays%3D7"


def test_a_reader_on_an_author_route_gets_403(client: TestClient, provider: Provider) -> None:
    sign_in(client, provider, Account("u-rob", ROB))
    csrf = client.get("/workbench/api/t/read").json()["csrf"]
    api = client.post("/workbench/api/t/write", headers={"X-CSRF-Token": csrf})
    assert api.status_code == 403
    assert api.json()["issue"][0]["code"] == "forbidden"
    page = client.get("/workbench/t/write")
    assert page.status_code == 403
    assert "text/html" in page.headers["content-type"]
    assert "author role" in page.text


def test_author_posts_need_the_csrf_header(client: TestClient, provider: Provider) -> None:
    sign_in(client, provider, Account("u-ana", ANA))
    csrf = client.get("/workbench/api/t/read").json()["csrf"]
    assert client.post("/workbench/api/t/write").status_code == 403
    assert client.post("/workbench/api/t/write", headers={"X-CSRF-Token": "x"}).status_code == 403
    assert client.post("/workbench/api/t/write", headers={"X-CSRF-Token": csrf}).status_code == 200


def test_a_session_ends_after_twelve_hours_or_when_the_roles_change(
    client: TestClient, provider: Provider
) -> None:
    sign_in(client, provider, Account("u-ana", ANA))
    sessions = signin_of(client).sessions
    assert sessions is not None
    sessions.clock = lambda: time.time() + MAX_SESSION_SECONDS + 1
    assert client.get("/workbench/api/t/read").status_code == 401
    sessions.clock = time.time
    sign_in(client, provider, Account("u-ana", ANA))
    assert client.get("/workbench/api/t/read").status_code == 200
    sessions.policy = "another-policy"  # CDS_WORKBENCH_AUTHORS/READERS changed
    assert client.get("/workbench/api/t/read").status_code == 401


# -- signing out --------------------------------------------------------------------------------


def test_sign_out_needs_the_csrf_token(client: TestClient, provider: Provider) -> None:
    sign_in(client, provider, Account("u-ana", ANA))
    csrf = client.get("/workbench/api/t/read").json()["csrf"]
    refused = client.post("/workbench/logout", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert client.get("/workbench/api/t/read").status_code == 200  # still signed in
    out = client.post("/workbench/logout", data={"csrf": csrf})  # the page's form
    assert out.status_code == 200
    assert "You have signed out" in out.text
    assert "max-age=0" in cookies_set(out)[COOKIE].lower()
    assert client.get("/workbench/api/t/read").status_code == 401


def test_sign_out_with_the_header_ends_the_session_everywhere(
    client: TestClient, provider: Provider
) -> None:
    done = sign_in(client, provider, Account("u-ana", ANA))
    csrf = client.get("/workbench/api/t/read").json()["csrf"]
    assert client.post("/workbench/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    stolen = as_browser_with(client, session_cookie(done))  # the old id, replayed
    assert client.get("/workbench/api/t/read", headers=stolen).status_code == 401


# -- configuration ------------------------------------------------------------------------------


def test_disabled_sign_in_is_refused_outside_development() -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(env="production", workbench_auth="disabled")
    assert "CDS_WORKBENCH_AUTH=disabled is only allowed with CDS_ENV=development" in str(
        refused.value
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("workbench_oidc_issuer", "http://login.example.org/realms/x", "must be an https URL"),
        ("workbench_oidc_issuer", "https://login.example.org/x?y=1", "must be an https URL"),
        ("workbench_oidc_scopes", "profile email", "must include the scope openid"),
        ("workbench_authors", "ana@example.org, carol", "'carol' is neither an email nor"),
        ("workbench_readers", "group:", "'group:' is neither an email nor group:NAME"),
    ],
)
def test_bad_sign_in_settings_name_their_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(**{name: value})
    assert str(refused.value) == f"invalid setting CDS_{name.upper()}: {says}" or (
        str(refused.value).startswith(f"invalid setting CDS_{name.upper()}: {says}")
    )


def test_sign_in_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_WORKBENCH_OIDC_ISSUER", "http://127.0.0.1:8081/realms/dev")
    monkeypatch.setenv("CDS_WORKBENCH_OIDC_CLIENT_SECRET", "")
    monkeypatch.setenv("CDS_WORKBENCH_AUTHORS", " Ana@Example.org , group:CDS Authors ")
    settings = Settings()
    assert settings.workbench_oidc_issuer == "http://127.0.0.1:8081/realms/dev"
    assert settings.workbench_oidc_client_secret is None
    assert settings.workbench_authors == ["ana@example.org", "group:CDS Authors"]
    assert settings.workbench_readers == []
    assert SECRET not in repr(settings_for(Path("/tmp")))


def test_without_an_issuer_the_service_runs_and_the_workbench_answers_503(
    open_app: Open, tmp_path: Path
) -> None:
    client = open_app(settings_for(tmp_path, workbench_oidc_issuer=None))
    api = client.get("/workbench/api/t/read")
    assert api.status_code == 503
    assert "CDS_WORKBENCH_OIDC_ISSUER" in api.json()["issue"][0]["diagnostics"]
    page = client.get("/workbench/t/read")
    assert page.status_code == 503
    assert "CDS_WORKBENCH_OIDC_ISSUER" in page.text
    login = client.get("/workbench/login")
    assert login.status_code == 503
    assert client.get("/cds-services").status_code == 200  # hooks do not need the workbench
    bare = open_app(
        settings_for(tmp_path, workbench_oidc_issuer=None, workbench_oidc_client_id=None)
    )
    text = bare.get("/workbench/t/read").text
    assert "CDS_WORKBENCH_OIDC_ISSUER and CDS_WORKBENCH_OIDC_CLIENT_ID" in text


def test_disabled_sign_in_in_development_makes_everyone_an_author(
    open_app: Open, tmp_path: Path
) -> None:
    client = open_app(settings_for(tmp_path, env="development", workbench_auth="disabled"))
    user = client.get("/workbench/api/t/read").json()
    assert (user["subject"], user["role"]) == ("developer", "author")
    assert client.post("/workbench/api/t/write").status_code == 403  # CSRF still checked
    write = client.post("/workbench/api/t/write", headers={"X-CSRF-Token": user["csrf"]})
    assert write.status_code == 200
    assert user["csrf"] == client.app.state.workbench_csrf  # type: ignore[attr-defined]
    login = client.get("/workbench/login", params={"next": "/workbench/t/read"})
    assert login.status_code == 200


# -- sessions shared through Redis --------------------------------------------------------------


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_sessions_in_redis_are_seen_by_every_replica(
    open_app: Open, tmp_path: Path, provider: Provider, redis_db: redis.Redis
) -> None:
    first = open_app(redis_url=REDIS_URL)
    second = open_app(redis_url=REDIS_URL)
    done = sign_in(first, provider, Account("u-ana", ANA))
    cookie = as_browser_with(second, session_cookie(done))
    user = second.get("/workbench/api/t/read", headers=cookie)
    assert user.status_code == 200
    assert user.json()["role"] == "author"
    csrf = {"X-CSRF-Token": user.json()["csrf"]}
    assert second.post("/workbench/logout", headers={**cookie, **csrf}).status_code == 200
    assert first.get("/workbench/api/t/read").status_code == 401


def test_a_smart_session_or_a_sign_in_under_way_is_no_workbench_session(
    open_app: Open, provider: Provider, redis_db: redis.Redis
) -> None:
    client = open_app(redis_url=REDIS_URL)

    async def smart_session() -> str:
        store = SessionStore(REDIS_URL)
        session_id = store.new_id()
        await store.put(session_id, {"stage": "ready", "iss": "https://ehr", "csrf": "c"})
        await store.close()
        return session_id

    smart_id = client.portal.call(smart_session)  # type: ignore[union-attr]
    smart = as_browser_with(client, smart_id)
    assert client.get("/workbench/api/t/read", headers=smart).status_code == 401
    pending = session_cookie(start_login(client), LOGIN_COOKIE)
    under_way = as_browser_with(client, pending)
    assert client.get("/workbench/api/t/read", headers=under_way).status_code == 401


def test_the_lifespan_closes_the_store_and_the_client(
    tmp_path: Path, provider: Provider, redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[SessionStore] = []
    close = SessionStore.close

    async def spy(store: SessionStore) -> None:
        closed.append(store)
        await close(store)

    monkeypatch.setattr(SessionStore, "close", spy)
    app = build(settings_for(tmp_path, redis_url=REDIS_URL), provider)
    signin: SignIn = app.state.workbench_signin
    with TestClient(app, base_url=BASE) as client:
        sign_in(client, provider, Account("u-ana", ANA))
        assert signin.oidc is not None and signin.sessions is not None
        http, store = signin.oidc._http, signin.sessions.store
        assert closed == []
    assert http.is_closed
    assert store in closed
    assert signin.oidc is None and signin.sessions is None
