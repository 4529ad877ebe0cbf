"""Workbench sessions, kept server-side like the SMART app's (`smart/sessions.py`'s
`SessionStore`: in Redis when `CDS_REDIS_URL` is set, so every replica sees them; in process
otherwise). The browser holds only an opaque id in an HttpOnly, SameSite=Lax cookie.

Two records, each marked with its `kind`, so that no other record (a SMART session in the same
Redis, or a sign-in still under way) can stand in for it:

- a sign-in under way (`workbench-login`): state, nonce, PKCE verifier and the page to return
  to; cookie `cds_workbench_login` (Path=/workbench/callback); used once, valid 10 minutes;
- a signed-in session (`workbench`): subject, name, email, role, CSRF token, when it began and
  the role policy it was granted under; cookie `cds_workbench_session` (Path=/workbench). It ends
  after `CDS_WORKBENCH_SESSION_IDLE_SECONDS` without use, 12 hours after sign-in, or when the
  role lists change. No token of the identity provider is kept.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, get_args

from redis.exceptions import RedisError
from starlette.responses import Response

from cds_service.smart.pkce import new_state, new_verifier
from cds_service.smart.sessions import SessionStore
from cds_service.workbench.roles import Role

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "LOGIN_SECONDS",
    "MAX_SESSION_SECONDS",
    "PendingLogin",
    "SessionUnavailable",
    "SignedIn",
    "WorkbenchSessions",
    "clear_cookie",
    "set_cookie",
]

COOKIE = "cds_workbench_session"
LOGIN_COOKIE = "cds_workbench_login"
COOKIE_PATH = "/workbench"
LOGIN_COOKIE_PATH = "/workbench/callback"
LOGIN_SECONDS = 600
MAX_SESSION_SECONDS = 12 * 3600
_KIND = "workbench"
_LOGIN_KIND = "workbench-login"


class SessionUnavailable(Exception):
    """The session store (Redis) did not answer."""


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A sign-in under way: what the callback must see again, and where to go after it."""

    state: str
    nonce: str
    verifier: str
    next: str
    started: float


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A signed-in session: all the workbench keeps about the user."""

    subject: str
    name: str
    email: str | None
    role: Role
    csrf: str
    started: float
    policy: str


class WorkbenchSessions:
    """Sign-ins under way and signed-in sessions on one `SessionStore`."""

    def __init__(
        self, store: SessionStore, *, policy: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock

    async def _get(self, session_id: str | None) -> dict[str, Any] | None:
        try:
            return await self.store.get(session_id)
        except (RedisError, OSError, TimeoutError):
            raise SessionUnavailable from None

    async def _put(self, session_id: str, data: dict[str, Any]) -> None:
        try:
            await self.store.put(session_id, data)
        except (RedisError, OSError, TimeoutError):
            raise SessionUnavailable from None

    async def _delete(self, session_id: str | None) -> None:
        try:
            await self.store.delete(session_id)
        except (RedisError, OSError, TimeoutError):
            raise SessionUnavailable from None

    async def begin_login(self, next_path: str) -> tuple[str, PendingLogin]:
        """A new sign-in under way (fresh state, nonce and verifier) and its id."""
        pending = PendingLogin(
            state=new_state(),
            nonce=secrets.token_urlsafe(24),
            verifier=new_verifier(),
            next=next_path,
            started=self.clock(),
        )
        login_id = self.store.new_id()
        await self._put(login_id, {"kind": _LOGIN_KIND, **asdict(pending)})
        return login_id, pending

    async def take_login(self, login_id: str | None) -> PendingLogin | None:
        """The sign-in under way with this id, removed (it is used once); None when unknown,
        of another kind or older than LOGIN_SECONDS."""
        data = await self._get(login_id)
        if data is None or data.get("kind") != _LOGIN_KIND:
            return None
        await self._delete(login_id)
        try:
            pending = PendingLogin(
                str(data["state"]),
                str(data["nonce"]),
                str(data["verifier"]),
                str(data["next"]),
                float(data["started"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if self.clock() - pending.started > LOGIN_SECONDS:
            return None
        return pending

    async def sign_in(
        self, *, subject: str, name: str, email: str | None, role: Role
    ) -> tuple[str, SignedIn]:
        """A new signed-in session (a fresh id: never one the browser had before)."""
        session = SignedIn(
            subject=subject,
            name=name,
            email=email,
            role=role,
            csrf=secrets.token_urlsafe(24),
            started=self.clock(),
            policy=self.policy,
        )
        session_id = self.store.new_id()
        await self._put(session_id, {"kind": _KIND, **asdict(session)})
        return session_id, session

    async def signed_in(self, session_id: str | None) -> SignedIn | None:
        """The signed-in session with this id (its idle clock restarts), or None."""
        if not session_id:
            return None
        data = await self._get(session_id)
        if data is None or data.get("kind") != _KIND:
            return None
        try:
            email = data["email"]
            session = SignedIn(
                subject=str(data["subject"]),
                name=str(data["name"]),
                email=str(email) if email is not None else None,
                role=data["role"],
                csrf=str(data["csrf"]),
                started=float(data["started"]),
                policy=str(data["policy"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        expired = self.clock() - session.started > MAX_SESSION_SECONDS
        if expired or session.policy != self.policy or session.role not in get_args(Role):
            await self._delete(session_id)
            return None
        return session

    async def sign_out(self, session_id: str | None) -> None:
        await self._delete(session_id)

    async def close(self) -> None:
        await self.store.close()


def set_cookie(response: Response, name: str, value: str, *, secure: bool, max_age: int) -> None:
    """Set one of the two cookies (HttpOnly, SameSite=Lax, on its own path)."""
    response.set_cookie(
        name,
        value,
        httponly=True,
        secure=secure,
        samesite="lax",
        path=LOGIN_COOKIE_PATH if name == LOGIN_COOKIE else COOKIE_PATH,
        max_age=max_age,
    )


def clear_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(
        name,
        path=LOGIN_COOKIE_PATH if name == LOGIN_COOKIE else COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="lax",
    )
