"""Security headers on every response (the API serves JSON, never pages to frame or sniff)."""

from __future__ import annotations

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
        headers = dict(HEADERS)
        if hsts:
            headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        # The SMART app is meant to be framed by the EHR: its routes set a CSP with the tenant's
        # frame-ancestors, and X-Frame-Options (which cannot allow-list) must stay off.
        framed = {k: v for k, v in headers.items() if k != "X-Frame-Options"}
        # As ASGI sends them (lower-case names, latin-1), encoded once.
        self.headers = _raw(headers)
        self.framed_headers = _raw(framed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        framed = scope.get("path", "").startswith("/smart/")
        ours = self.framed_headers if framed else self.headers

        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message["headers"] = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in ours if pair[0] not in present)
            await send(message)

        await self.app(scope, receive, add)


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
