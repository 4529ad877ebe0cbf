"""Security headers on every response (the API serves JSON, never pages to frame or sniff)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeadersMiddleware"]

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # cards and feedback concern patients
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class SecurityHeadersMiddleware:
    """Adds HEADERS (and HSTS when `hsts`) unless a route set its own value."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = dict(HEADERS)
        if hsts:
            self.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        # The SMART app is meant to be framed by the EHR: its routes set a CSP with the tenant's
        # frame-ancestors, and X-Frame-Options (which cannot allow-list) must stay off.
        self.framed_headers = {k: v for k, v in self.headers.items() if k != "X-Frame-Options"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        framed = scope.get("path", "").startswith("/smart/")
        ours = self.framed_headers if framed else self.headers

        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ours.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, add)
