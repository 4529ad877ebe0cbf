"""The `jti` replay cache: every token is accepted once within its lifetime.

In Redis when `CDS_REDIS_URL` is set, so a token replayed against another replica is refused too;
in process otherwise. If Redis cannot be reached the check falls back to this process's memory
(logged), which still stops replays against the same replica.

Every call checks its token, so the Redis `SET NX EX` goes straight onto a pooled connection
(`_set_once`) rather than through redis-py's per-command machinery (retries with backoff,
observability hooks), which cost more than the exchange itself. A connection that fails is
dropped, and the command tried once more on a new one: after Redis restarts, the pooled
connections are stale.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["ReplayCache"]

log = logging.getLogger(__name__)


class ReplayCache:
    """`first_use(key, ttl)` is True exactly once per key while it lives."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        timeout: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._local: dict[str, float] = {}
        self._clock = clock
        self._timeout = timeout
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as redis_asyncio

            self._redis = redis_asyncio.from_url(
                redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
            )

    async def first_use(self, key: str, ttl_seconds: int) -> bool:
        """Record `key`; False when it was already recorded and has not expired."""
        ttl_seconds = max(ttl_seconds, 1)
        if self._redis is not None:
            try:
                # asyncio.timeout, not wait_for: no task per check (this runs on every call)
                async with asyncio.timeout(self._timeout):
                    return await self._set_once(f"cds:jti:{key}", ttl_seconds)
            except Exception as exc:
                log.warning(
                    "replay cache: Redis unavailable (%s); checking this process only",
                    type(exc).__name__,
                )
        now = self._clock()
        if len(self._local) > 100_000:
            self._local = {k: t for k, t in self._local.items() if t > now}
        expires = self._local.get(key)
        if expires is not None and expires > now:
            return False
        self._local[key] = now + ttl_seconds
        return True

    async def _set_once(self, key: str, ttl_seconds: int) -> bool:
        """`SET key 1 NX EX ttl` in Redis: True when the key was not there."""
        pool = self._redis.connection_pool
        for attempt in (1, 2):
            connection = await pool.get_connection()
            try:
                await connection.send_command("SET", key, b"1", "NX", "EX", ttl_seconds)
                reply = await connection.read_response()
            except RedisConnectionError:
                await connection.disconnect()
                if attempt == 2:
                    raise
                continue  # a stale connection (Redis restarted): once more, on a new one
            except BaseException:
                await connection.disconnect()  # its reply may still come: never reuse it
                raise
            finally:
                await pool.release(connection)
            return reply is not None  # OK when set, nil when the key was there
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
