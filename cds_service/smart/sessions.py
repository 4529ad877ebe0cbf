"""Server-side SMART sessions: the browser holds only an opaque id in an HttpOnly cookie.

Tokens live here, never in URLs, pages, browser storage or logs. Sessions expire after
`CDS_SMART_SESSION_IDLE_SECONDS` without use (15 minutes by default). In Redis when configured
(every replica sees them), in process otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from cds_service.security.smart_discovery import SmartDiscovery
from cds_service.smart.style import StyleCache

__all__ = ["SessionStore", "SmartRuntime"]

log = logging.getLogger(__name__)


class SessionStore:
    def __init__(
        self,
        redis_url: str | None = None,
        *,
        idle_seconds: int = 900,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._local: dict[str, tuple[float, dict[str, Any]]] = {}
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as redis_asyncio

            self._redis = redis_asyncio.from_url(redis_url, socket_timeout=0.5)

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(32)

    async def get(self, session_id: str | None) -> dict[str, Any] | None:
        """The session (its idle clock restarts), or None when unknown or idle too long."""
        if not session_id or len(session_id) > 100:
            return None
        if self._redis is not None:
            key = f"cds:smart:{session_id}"
            raw = await asyncio.wait_for(self._redis.get(key), 1.0)
            if raw is None:
                return None
            await self._redis.expire(key, self.idle_seconds)
            data: dict[str, Any] = orjson.loads(raw)
            return data
        found = self._local.get(session_id)
        now = self._clock()
        if found is None or now - found[0] > self.idle_seconds:
            self._local.pop(session_id, None)
            return None
        self._local[session_id] = (now, found[1])
        return found[1]

    async def put(self, session_id: str, data: dict[str, Any]) -> None:
        if self._redis is not None:
            await asyncio.wait_for(
                self._redis.set(
                    f"cds:smart:{session_id}", orjson.dumps(data), ex=self.idle_seconds
                ),
                1.0,
            )
            return
        if len(self._local) > 50_000:  # drop idle sessions before they pile up
            now = self._clock()
            self._local = {k: v for k, v in self._local.items() if now - v[0] <= self.idle_seconds}
        self._local[session_id] = (self._clock(), data)

    async def delete(self, session_id: str | None) -> None:
        if not session_id:
            return
        if self._redis is not None:
            await self._redis.delete(f"cds:smart:{session_id}")
        self._local.pop(session_id, None)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


class SmartRuntime:
    """What the SMART routes share: sessions, the discovery cache and the EHRs' styles."""

    def __init__(self, sessions: SessionStore, discovery: SmartDiscovery) -> None:
        self.sessions = sessions
        self.discovery = discovery
        self.styles = StyleCache()
