"""Signing in to the workbench: `GET /workbench/login`, `GET /workbench/callback`,
`POST /workbench/logout`.

`login?next=/workbench/...` starts the OpenID Connect code flow (PKCE S256, `state`, `nonce`
kept server-side) and sends the browser to the identity provider; `callback` checks the state,
trades the code for the id_token, verifies it, gives the account its role (`roles.py`) and
starts a session, then returns to `next`, which is only ever a workbench path of this site.
Every failure is a page saying what went wrong, 400 when the request is at fault, 502 when the
provider is, 503 when sign-in is not configured; never a code, token or claim in a page or log.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape
from typing import Annotated
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cds_service.api.body import read_small_form
from cds_service.config import Settings
from cds_service.smart.pkce import challenge
from cds_service.smart.sessions import SessionStore
from cds_service.urls import public_base
from cds_service.workbench.oidc import OidcClient, OidcError, error_code
from cds_service.workbench.roles import policy_fingerprint, role_for
from cds_service.workbench.sessions import (
    COOKIE,
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    MAX_SESSION_SECONDS,
    SessionUnavailable,
    WorkbenchSessions,
    clear_cookie,
    set_cookie,
)

__all__ = ["HOME", "SignIn", "page", "router", "safe_next"]

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

HOME = "/workbench"
CSP = (
    "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
SIGN_IN = ("Sign in", f"{HOME}/login")
_OWN_ROUTES = ("/workbench/login", "/workbench/callback", "/workbench/logout")
_UNAVAILABLE = OidcError("the session store does not answer; try again in a moment", status=503)


class SignIn:
    """What the sign-in routes and the `Reader`/`Author` dependencies share for one app.

    The session store and the HTTP client to the provider exist while the app runs (`running`,
    entered by the app's lifespan); `problem` says why sign-in cannot work (not configured).
    """

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None) -> None:
        self.settings = settings
        self.disabled = settings.workbench_auth == "disabled"
        self.developer_csrf = secrets.token_urlsafe(24)  # per process, for the CSRF check
        missing = [
            name
            for name, value in (
                ("CDS_WORKBENCH_OIDC_ISSUER", settings.workbench_oidc_issuer),
                ("CDS_WORKBENCH_OIDC_CLIENT_ID", settings.workbench_oidc_client_id),
            )
            if not value
        ]
        self.problem = (
            f"workbench sign-in is not configured: set {' and '.join(missing)} "
            "(see docs/workbench-auth.md)"
            if missing and not self.disabled
            else None
        )
        self._transport = transport
        self.sessions: WorkbenchSessions | None = None
        self.oidc: OidcClient | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open the session store and the provider's client; close both at the end."""
        settings = self.settings
        if self.disabled or self.problem is not None:
            log.warning(
                "CDS_WORKBENCH_AUTH=disabled: everyone is a workbench author (development only)"
                if self.disabled
                else f"{self.problem}: the workbench answers 503 until then"
            )
            yield
            return
        assert settings.workbench_oidc_issuer and settings.workbench_oidc_client_id
        if not (settings.workbench_authors or settings.workbench_readers):
            log.warning(
                "no one may sign in to the workbench: CDS_WORKBENCH_AUTHORS and "
                "CDS_WORKBENCH_READERS are empty"
            )
        store = SessionStore(
            settings.redis_url, idle_seconds=settings.workbench_session_idle_seconds
        )
        http = httpx.AsyncClient(
            transport=self._transport, timeout=httpx.Timeout(5.0), follow_redirects=False
        )
        secret = settings.workbench_oidc_client_secret
        self.sessions = WorkbenchSessions(
            store,
            policy=policy_fingerprint(settings.workbench_authors, settings.workbench_readers),
        )
        self.oidc = OidcClient(
            http,
            issuer=settings.workbench_oidc_issuer,
            client_id=settings.workbench_oidc_client_id,
            client_secret=secret.get_secret_value() if secret is not None else None,
            scopes=settings.workbench_oidc_scopes,
            groups_claim=settings.workbench_groups_claim,
        )
        try:
            yield
        finally:
            self.sessions = self.oidc = None
            try:
                await http.aclose()
            finally:
                await store.close()

    def ready(self) -> tuple[WorkbenchSessions, OidcClient]:
        """The sessions and the provider's client; OidcError (503) when sign-in cannot work."""
        if self.problem is not None:
            raise OidcError(self.problem, status=503)
        if self.sessions is None or self.oidc is None:
            raise OidcError(
                "workbench sign-in is not running (the app has not started)", status=503
            )
        return self.sessions, self.oidc


def signin_of(request: Request) -> SignIn:
    """The app's `SignIn` (put there by `install_workbench_auth`)."""
    found: SignIn = request.app.state.workbench_signin
    return found


def safe_next(value: str) -> str | None:
    """`value` when it is a workbench path of this site (never another origin), else None.

    >>> safe_next("/workbench/rules?days=7"), safe_next("//evil.example/workbench")
    ('/workbench/rules?days=7', None)
    """
    if len(value) > 2000 or "\\" in value or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    path = parts.path
    if parts.scheme or parts.netloc or not (path == HOME or path.startswith(f"{HOME}/")):
        return None
    lowered = path.lower()
    if any(s in (".", "..") for s in path.split("/")) or any(
        encoded in lowered for encoded in ("%2e", "%2f", "%5c")
    ):
        return None
    if path.startswith(_OWN_ROUTES):
        return HOME
    return f"{path}?{parts.query}" if parts.query else path


def page(
    title: str, message: str, status: int, *, action: tuple[str, str] | None = None
) -> Response:
    """A small page (no script) saying what happened, with a way on."""
    link = f'<p><a href="{escape(action[1])}">{escape(action[0])}</a></p>' if action else ""
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · cds-service workbench</title>"
        '<link rel="stylesheet" href="/workbench/static/workbench.css"></head><body>'
        '<header class="top"><span class="brand">cds-service workbench</span></header>'
        f'<main><h1>{escape(title)}</h1><p class="problem" role="alert">{escape(message)}</p>'
        f"{link}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _failed(error: OidcError) -> Response:
    log.warning("workbench sign-in failed (%d): %s", error.status, error.message)
    title = "Sign-in is not available" if error.status == 503 else "Sign-in failed"
    return page(title, error.message, error.status, action=SIGN_IN)


def _secure(request: Request, settings: Settings) -> bool:
    return public_base(request, settings.public_base_url).startswith("https://")


def _redirect_uri(request: Request, settings: Settings) -> str:
    return f"{public_base(request, settings.public_base_url)}{HOME}/callback"


def _same(sent: str, expected: str) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


@router.get("/workbench/login")
async def login(
    request: Request, next_: Annotated[str, Query(alias="next", max_length=2000)] = HOME
) -> Response:
    """Send the browser to the identity provider (or straight on when already signed in)."""
    signin = signin_of(request)
    target = safe_next(next_)
    if target is None:
        return page(
            "This sign-in link is not valid",
            "The page to return to after signing in must be a workbench page of this site.",
            400,
            action=SIGN_IN,
        )
    if signin.disabled:
        return RedirectResponse(target, status_code=303, headers=HEADERS)
    try:
        sessions, oidc = signin.ready()
        if await sessions.signed_in(request.cookies.get(COOKIE)) is not None:
            return RedirectResponse(target, status_code=303, headers=HEADERS)
        config = await oidc.configuration()
        login_id, pending = await sessions.begin_login(target)
    except OidcError as error:
        return _failed(error)
    except SessionUnavailable:
        return _failed(_UNAVAILABLE)
    url = oidc.authorization_url(
        config,
        redirect_uri=_redirect_uri(request, signin.settings),
        state=pending.state,
        nonce=pending.nonce,
        code_challenge=challenge(pending.verifier),
    )
    response = RedirectResponse(url, status_code=303, headers=HEADERS)
    secure = _secure(request, signin.settings)
    set_cookie(response, LOGIN_COOKIE, login_id, secure=secure, max_age=LOGIN_SECONDS)
    return response


@router.get("/workbench/callback")
async def callback(request: Request) -> Response:
    """Back from the identity provider: check, verify, give the role, start the session."""
    signin = signin_of(request)
    if signin.disabled:
        return RedirectResponse(HOME, status_code=303, headers=HEADERS)
    settings = signin.settings
    secure = _secure(request, settings)
    params = request.query_params
    try:
        sessions, oidc = signin.ready()
        pending = await sessions.take_login(request.cookies.get(LOGIN_COOKIE))
        if pending is None:
            raise OidcError(
                "this sign-in has expired (it must finish within 10 minutes), was used already "
                "or was started in another browser; sign in again",
                status=400,
            )
        if not _same(params.get("state", ""), pending.state):
            raise OidcError("the sign-in's state does not match this browser's", status=400)
        if "error" in params:
            refusal = error_code(params["error"])
            failing = refusal in ("server_error", "temporarily_unavailable")
            raise OidcError(
                f"the identity provider did not sign you in ({refusal})",
                status=502 if failing else 400,
            )
        code = params.get("code")
        if not code:
            raise OidcError("the identity provider sent no authorization code", status=400)
        config = await oidc.configuration()
        id_token = await oidc.exchange_code(
            config,
            code=code,
            redirect_uri=_redirect_uri(request, settings),
            verifier=pending.verifier,
        )
        identity = await oidc.identity(id_token, nonce=pending.nonce)
        role = role_for(
            identity.email,
            identity.groups,
            authors=settings.workbench_authors,
            readers=settings.workbench_readers,
        )
        if role is None:
            log.info("workbench sign-in refused: the account has no workbench role")
            response = page(
                "Your account is not allowed",
                f"You signed in as {identity.name}, but this account may not use the workbench. "
                "Ask the service's operators to add your email or one of your groups to "
                "CDS_WORKBENCH_READERS or CDS_WORKBENCH_AUTHORS.",
                403,
            )
            clear_cookie(response, LOGIN_COOKIE, secure=secure)
            return response
        await sessions.sign_out(request.cookies.get(COOKIE))  # this browser's earlier session
        session_id, _ = await sessions.sign_in(
            subject=identity.subject, name=identity.name, email=identity.email, role=role
        )
    except (OidcError, SessionUnavailable) as caught:
        response = _failed(caught if isinstance(caught, OidcError) else _UNAVAILABLE)
        clear_cookie(response, LOGIN_COOKIE, secure=secure)
        return response
    log.info("workbench sign-in: signed in with the role %s", role)
    response = RedirectResponse(pending.next, status_code=303, headers=HEADERS)
    set_cookie(response, COOKIE, session_id, secure=secure, max_age=MAX_SESSION_SECONDS)
    clear_cookie(response, LOGIN_COOKIE, secure=secure)
    return response


@router.post("/workbench/logout")
async def logout(request: Request) -> Response:
    """End the session: the CSRF token comes in the `X-CSRF-Token` header or the form's `csrf`."""
    signin = signin_of(request)
    sent = request.headers.get("x-csrf-token") or (await read_small_form(request)).get("csrf", "")
    stale = page(
        "Not signed out",
        "The sign-out form has expired; reload the page and sign out again.",
        403,
        action=("Back to the workbench", HOME),
    )
    if signin.disabled:  # nothing to end, but the check stays as in production
        if not _same(sent, signin.developer_csrf):
            return stale
        return page("Signed out", "Sign-in is disabled (development): nothing to end.", 200)
    secure = _secure(request, signin.settings)
    session_id = request.cookies.get(COOKIE)
    try:
        sessions, _ = signin.ready()
        session = await sessions.signed_in(session_id)
        if session is not None:
            if not _same(sent, session.csrf):
                return stale
            await sessions.sign_out(session_id)
    except (OidcError, SessionUnavailable) as caught:
        return _failed(caught if isinstance(caught, OidcError) else _UNAVAILABLE)
    response = page(
        "Signed out",
        "You have signed out of the workbench. Your organisation's sign-in may still remember "
        "you: sign out there too on a shared computer.",
        200,
        action=("Sign in again", f"{HOME}/login"),
    )
    clear_cookie(response, COOKIE, secure=secure)
    return response
