"""Per-tenant rate limiting (off unless a tenant sets `rate_limit_per_minute`).

With `CDS_REDIS_URL` set, calls are counted in Redis (`SharedRateLimiter`): a sliding window of
the last 60 seconds per tenant, checked and recorded in one Lua script on Redis's own clock, so
N replicas enforce one limit together. When Redis cannot be reached, each process falls back to
its own limiter (a token bucket: a burst of up to a minute's allowance, refilled continuously),
logs it once, retries Redis after a few seconds, and says so in `/readyz` (`checks.rate_limits`).
Without Redis, the token bucket alone (each replica then enforces the limit on its own share).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimiter", "SharedRateLimiter"]

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0

# KEYS[1]: the tenant's window; ARGV: limit, window (s), a unique member. Returns "0" when the
# call is recorded, else the seconds until the oldest call in the window leaves it (a string:
# Redis turns a Lua number into an integer).
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(math.max(tonumber(oldest[2]) + window - now, 0.001))
"""


class RateLimiter:
    """A token bucket per key, in this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def state(self) -> str:
        """What `/readyz` shows."""
        return "local to this process"

    async def allow(self, key: str, per_minute: int) -> float:
        """0 when the call may go ahead, else the seconds until it could."""
        return self.take(key, per_minute)

    async def close(self) -> None:
        """Nothing to close in this process (the shared limiter closes its Redis client)."""

    def take(self, key: str, per_minute: int) -> float:
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - at) * per_minute / 60.0)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) * 60.0 / per_minute


class SharedRateLimiter(RateLimiter):
    """The limits counted in Redis across replicas; this process's bucket while Redis is down."""

    def __init__(
        self,
        redis_url: str,
        *,
        timeout: float = 0.2,
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock)
        import redis.asyncio as redis_asyncio

        self._redis: Any = redis_asyncio.from_url(
            redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        self._script: Any = self._redis.register_script(_SLIDING_WINDOW)
        self._timeout = timeout
        self._retry_after = retry_after
        self._down_until = 0.0

    @property
    def shared(self) -> bool:
        """False while Redis is unreachable (this process counts on its own)."""
        return self._clock() >= self._down_until

    @property
    def state(self) -> str:
        if self.shared:
            return "ok"
        return "local to this process: Redis unreachable, limits are not shared"

    async def allow(self, key: str, per_minute: int) -> float:
        if self.shared:
            try:
                async with asyncio.timeout(self._timeout):
                    wait = await self._script(
                        keys=[f"cds:rate:{key}"],
                        args=[per_minute, WINDOW_SECONDS, uuid.uuid4().hex],
                    )
                return float(wait)
            except Exception as exc:  # Redis down, slow or refusing: this process's bucket
                self._down_until = self._clock() + self._retry_after
                log.warning(
                    "rate limits: Redis unavailable (%s); counted in this process for %.0fs",
                    type(exc).__name__,
                    self._retry_after,
                )
        return self.take(key, per_minute)

    async def close(self) -> None:
        await self._redis.aclose()
