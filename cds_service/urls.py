"""Our own URLs as callers see them: behind a proxy they differ from the ones requests arrive on.

Set `CDS_PUBLIC_BASE_URL` in production; without it the URL the request came in on is used. The
CDS Hooks routes (card links back to us, the `aud` a JWT must carry) and the SMART routes
(redirect URIs, the session cookie's `Secure` flag) both build on it.
"""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["endpoint_url", "public_base"]


def public_base(request: Request, public_base_url: str | None) -> str:
    """Our base URL as callers see it: CDS_PUBLIC_BASE_URL (stored without a trailing slash),
    else the one the request came in on."""
    return public_base_url or str(request.base_url).rstrip("/")


def endpoint_url(request: Request, public_base_url: str | None) -> str:
    """The URL of the endpoint called, as the EHR must have put it in `aud`."""
    return public_base(request, public_base_url) + request.url.path
