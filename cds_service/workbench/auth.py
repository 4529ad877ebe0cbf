"""Who may use the workbench: roles `reader` and `author` (placeholder: development mode only).

INTERFACE (fixed; the OIDC implementation replaces the body, not the names):

- `WorkbenchUser`: who is signed in, their role and their session's CSRF token.
- `install_workbench_auth(app, settings, transport=None)`: adds the sign-in routes and state.
- `Reader` / `Author`: FastAPI dependencies (Annotated aliases) giving the `WorkbenchUser`;
  a page without a session redirects to sign-in, an API call answers 401, a user without the
  role gets 403. `Author` also checks the `X-CSRF-Token` header on POST.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

import httpx
from fastapi import Depends, FastAPI
from starlette.requests import Request

from cds_service.config import Settings
from cds_service.exceptions import CDSServiceError

__all__ = ["Author", "Reader", "Role", "WorkbenchUser", "install_workbench_auth"]

Role = Literal["reader", "author"]


@dataclass(frozen=True, slots=True)
class WorkbenchUser:
    subject: str
    name: str
    role: Role
    csrf: str


class _Forbidden(CDSServiceError):
    status_code = 403


def install_workbench_auth(
    app: FastAPI, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> None:
    app.state.workbench_csrf = secrets.token_urlsafe(24)


async def _user(request: Request) -> WorkbenchUser:
    settings: Settings = request.app.state.cds.settings
    if settings.env != "development":
        raise _Forbidden("the workbench needs OpenID Connect sign-in (not configured)")
    return WorkbenchUser("developer", "Developer", "author", request.app.state.workbench_csrf)


async def _reader(request: Request) -> WorkbenchUser:
    return await _user(request)


async def _author(request: Request) -> WorkbenchUser:
    user = await _user(request)
    if request.method == "POST" and request.headers.get("x-csrf-token") != user.csrf:
        raise _Forbidden("missing or wrong X-CSRF-Token header")
    return user


Reader = Annotated[WorkbenchUser, Depends(_reader)]
Author = Annotated[WorkbenchUser, Depends(_author)]
