"""The `Caller` dependency: every CDS Hooks endpoint authenticates the EHR first.

The audience a token must carry is the URL of the endpoint called: `CDS_PUBLIC_BASE_URL` plus
the path (set it in production; without it the URL the request arrived on is used). Refusals
answer 401 with no detail; the reason goes to the log with the token's `iss`, `tenant` and `jti`,
never the token.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from cds_service.deps import app_state
from cds_service.exceptions import TooManyRequests, Unauthorized
from cds_service.security.jwt_auth import AuthFailure, Principal
from cds_service.urls import endpoint_url

__all__ = ["Caller", "authenticate"]

log = logging.getLogger("cds_service.auth")


async def authenticate(request: Request) -> Principal:
    """The verified caller (a tenant-less principal when CDS_AUTH=disabled).

    Its one parameter is the request (the app's state is read from it, `app_state`): FastAPI
    resolves a dependency's own dependencies on every call, and this one runs on every hook.
    """
    state = app_state(request)
    if state.verifier is None:
        principal = Principal(None)
    else:
        audience = endpoint_url(request, state.settings.public_base_url)
        try:
            principal = await state.verifier.verify(request.headers.get("authorization"), audience)
        except AuthFailure as failure:
            state.auth_refusals[failure.reason] = state.auth_refusals.get(failure.reason, 0) + 1
            log.warning(
                "JWT refused: %s %s",
                failure.reason,
                " ".join(f"{k}={v}" for k, v in sorted(failure.ids.items())),
            )
            raise Unauthorized() from None
        tenant = principal.tenant
        if tenant is not None and tenant.rate_limit_per_minute:
            wait = await state.rate_limiter.allow(tenant.id, tenant.rate_limit_per_minute)
            if wait > 0:
                raise TooManyRequests(wait)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(authenticate)]
