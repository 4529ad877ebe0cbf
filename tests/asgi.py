"""One request through an ASGI app with raw messages (the middleware tests)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp


def responding(headers: list[tuple[bytes, bytes]], body: bytes = b"") -> ASGIApp:
    """An app that answers 200 with these headers and body."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def exchange(app: ASGIApp, scope: dict[str, Any]) -> list[Any]:
    """The messages `app` sends for one request (an empty body) with this scope."""
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def run() -> None:
        await app({"type": "http", **scope}, receive, send)

    asyncio.run(run())
    return sent
