"""Who may use the workbench: roles `reader` and `author`, signed in with OpenID Connect.

INTERFACE (fixed; the workbench routes use these names):

- `WorkbenchUser`: who is signed in, their role and their session's CSRF token.
- `install_workbench_auth(app, settings, transport=None)`: adds the sign-in routes
  (`login.py`), the rendering of refusals and the sign-in state, opened and closed with the app's
  lifespan; `transport` replaces the network to the identity provider (tests).
- `Reader` / `Author`: FastAPI dependencies (Annotated aliases) giving the `WorkbenchUser`.

How the dependencies answer a request:

- signed in with the role (an author is also a reader): the `WorkbenchUser`;
- no session, or one that ended: 401 under `/workbench/api/` (an OperationOutcome), otherwise a
  303 to `/workbench/login?next=<the page>`;
- a reader on an `Author` route: 403;
- POST, PUT, PATCH or DELETE without an `X-CSRF-Token` header equal to the session's token:
  403 (on `Reader` routes too: a forged request must not pass because its route is read-only);
- sign-in not configured (no issuer or client id) or the session store not answering: 503;
- `CDS_WORKBENCH_AUTH=disabled` (development only, see config.py): everyone is "developer", an
  author, with a per-process random CSRF token that is still checked.

Refusals are `CDSServiceError`s: JSON (an OperationOutcome, as `api/errors.py` renders every
service error) under `/workbench/api/`, a page or the redirect to sign in elsewhere.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from fastapi import Depends, FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cds_service.api.errors import outcome_response
from cds_service.config import Settings
from cds_service.exceptions import CDSServiceError
from cds_service.workbench import login
from cds_service.workbench.login import HEADERS, HOME, SignIn, page, safe_next, signin_of
from cds_service.workbench.oidc import OidcError
from cds_service.workbench.roles import Role
from cds_service.workbench.sessions import COOKIE, SessionUnavailable

__all__ = [
    "Author",
    "Reader",
    "Role",
    "WorkbenchAuthError",
    "WorkbenchUser",
    "install_workbench_auth",
]

API = f"{HOME}/api/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class WorkbenchUser:
    """Who is signed in: `subject` is the provider's `sub`; `csrf` the token unsafe requests
    must send back in `X-CSRF-Token`; `email` only when the provider verified it."""

    subject: str
    name: str
    role: Role
    csrf: str
    email: str | None = None


class WorkbenchAuthError(CDSServiceError):
    """A workbench request refused by sign-in or role (rendered by `_render`)."""

    title = "Not allowed"


class _SignInRequired(WorkbenchAuthError):
    status_code = 401
    issue_code = "login"


class _Forbidden(WorkbenchAuthError):
    status_code = 403
    issue_code = "forbidden"


class _Unavailable(WorkbenchAuthError):
    status_code = 503
    issue_code = "transient"
    title = "The workbench is not available"


async def _render(request: Request, exc: Exception) -> Response:
    """JSON for the API, the way to sign in or a page for the rest."""
    assert isinstance(exc, WorkbenchAuthError)
    if request.url.path.startswith(API):
        return outcome_response(exc.status_code, exc.issues, headers={"Cache-Control": "no-store"})
    if isinstance(exc, _SignInRequired):
        here = f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path
        target = (safe_next(here) if request.method == "GET" else None) or HOME
        return RedirectResponse(
            f"{HOME}/login?{urlencode({'next': target})}", status_code=303, headers=HEADERS
        )
    back = ("Back to the workbench", HOME) if exc.status_code == 403 else None
    return page(exc.title, exc.message, exc.status_code, action=back)


def _check_csrf(request: Request, user: WorkbenchUser) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get("x-csrf-token", "")
    if not sent or not hmac.compare_digest(sent.encode(), user.csrf.encode()):
        raise _Forbidden("missing or wrong X-CSRF-Token header (reload the page)")


async def _user(request: Request) -> WorkbenchUser:
    signin = signin_of(request)
    if signin.disabled:
        user = WorkbenchUser("developer", "Developer", "author", signin.developer_csrf)
    else:
        try:
            sessions, _ = signin.ready()
            session = await sessions.signed_in(request.cookies.get(COOKIE))
        except OidcError as error:
            raise _Unavailable(error.message) from None
        except SessionUnavailable:
            raise _Unavailable("the session store does not answer; try again in a moment") from None
        if session is None:
            raise _SignInRequired("sign in to the workbench first (/workbench/login)")
        user = WorkbenchUser(
            session.subject, session.name, session.role, session.csrf, email=session.email
        )
    _check_csrf(request, user)
    return user


async def _reader(request: Request) -> WorkbenchUser:
    return await _user(request)


async def _author(request: Request) -> WorkbenchUser:
    user = await _user(request)
    if user.role != "author":
        raise _Forbidden("this needs the workbench's author role; you are a reader")
    return user


Reader = Annotated[WorkbenchUser, Depends(_reader)]
Author = Annotated[WorkbenchUser, Depends(_author)]


def install_workbench_auth(
    app: FastAPI, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> None:
    """Add the sign-in routes and refusal rendering; open the session store and the provider's
    client with the app's lifespan (wrapped here, so `create_app`'s lifespan stays as it is:
    FastAPI runs no shutdown handlers beside a lifespan) and close them when it ends."""
    signin = SignIn(settings, transport)
    app.state.workbench_signin = signin
    app.state.workbench_csrf = signin.developer_csrf  # the token of disabled mode (tests)
    app.include_router(login.router)
    app.add_exception_handler(WorkbenchAuthError, _render)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running_app: Any) -> AsyncIterator[Any]:
        async with signin.running(), inner(running_app) as state:
            yield state

    app.router.lifespan_context = lifespan
