"""The two-level score cache: in-process (cachetools TTL) in front of Redis (shared by replicas).

Redis is optional (`CDS_REDIS_URL`); without it the cache is in-process only. Redis is never
allowed to slow a hook down: every Redis operation has a short timeout, and after a failure Redis
is left alone for a few seconds (the local level and computation carry on) and then tried again,
so the cache recovers by itself when Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from cachetools import TTLCache

__all__ = ["CacheStats", "ScoreCache"]

log = logging.getLogger(__name__)

# A key Redis did not hold is not asked for again for this long, in this process. Without it, a
# patient whose score no rule has computed yet (a CHA2DS2-VASc without atrial fibrillation) cost
# every call a round trip to Redis for nothing. A result another replica or the precompute job
# stores under that key is then seen up to this much later: until then this process computes the
# score from the record (fetching the data only the scores read), which gives the same result. A
# call that could not load that data asks Redis again (`recheck_absent`) for the latest result.
ABSENT_SECONDS = 30.0


@dataclass(slots=True)
class CacheStats:
    """Hits and misses by level, and Redis failures."""

    local_hits: int = 0
    redis_hits: int = 0
    misses: int = 0
    redis_errors: int = 0
    writes: int = 0


class ScoreCache:
    """Get/set JSON objects by key, locally and (when configured) in Redis."""

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        ttl_seconds: int = 86_400,
        max_entries: int = 50_000,
        redis_timeout: float = 0.1,
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self._local: TTLCache[str, dict[str, Any]] = TTLCache(max_entries, ttl_seconds)
        self._absent: TTLCache[str, bool] = TTLCache(max_entries, ABSENT_SECONDS, timer=clock)
        self._ttl = ttl_seconds
        self._timeout = redis_timeout
        self._retry_after = retry_after
        self._clock = clock
        self._down_until = 0.0
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as redis_asyncio

            self._redis = redis_asyncio.from_url(
                redis_url, socket_connect_timeout=redis_timeout, socket_timeout=redis_timeout
            )
        self.stats = CacheStats()

    @property
    def shared(self) -> bool:
        """True when a Redis level is configured."""
        return self._redis is not None

    def _redis_usable(self) -> bool:
        return self._redis is not None and self._clock() >= self._down_until

    def _redis_failed(self, exc: BaseException) -> None:
        self.stats.redis_errors += 1
        self._down_until = self._clock() + self._retry_after
        log.warning(
            "score cache: Redis unavailable (%s); local cache only for %.0fs",
            type(exc).__name__,
            self._retry_after,
        )

    async def get(self, key: str, *, recheck_absent: bool = False) -> dict[str, Any] | None:
        """The cached value, from the local level or Redis (which then fills the local level).

        A key Redis did not hold is not asked for again for `ABSENT_SECONDS` (unless set here),
        except with `recheck_absent` (a fallback that must see what another replica stored)."""
        if not self.enabled:
            self.stats.misses += 1
            return None
        found = self._local.get(key)
        if found is not None:
            self.stats.local_hits += 1
            return found
        if self._redis_usable() and (recheck_absent or key not in self._absent):
            try:
                async with asyncio.timeout(self._timeout):  # no task per get, as wait_for makes
                    raw = await self._redis.get(key)
            except Exception as exc:  # Redis down, slow or refusing: carry on without it
                self._redis_failed(exc)
            else:
                if raw is None:
                    self._absent[key] = True
                else:
                    value: dict[str, Any] = orjson.loads(raw)
                    self._local[key] = value
                    self.stats.redis_hits += 1
                    return value
        self.stats.misses += 1
        return None

    async def set(self, key: str, value: dict[str, Any]) -> None:
        """Store at both levels (Redis with the same time to live)."""
        if not self.enabled:
            return
        self._local[key] = value
        self._absent.pop(key, None)
        self.stats.writes += 1
        if self._redis_usable():
            try:
                async with asyncio.timeout(self._timeout):
                    await self._redis.set(key, orjson.dumps(value), ex=self._ttl)
            except Exception as exc:
                self._redis_failed(exc)

    async def ping(self) -> bool:
        """True when Redis answers (or is not configured)."""
        if self._redis is None:
            return True
        try:
            return bool(await asyncio.wait_for(self._redis.ping(), max(self._timeout, 0.5)))
        except Exception:
            return False

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
