"""Per-tenant rate limiting (off unless a tenant sets `rate_limit_per_minute`).

A token bucket per tenant in this process: a burst of up to a minute's allowance, refilled
continuously. With several replicas each enforces the limit on its own share of the traffic.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, per_minute: int) -> float:
        """0 when the call may go ahead, else the seconds until it could."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - at) * per_minute / 60.0)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) * 60.0 / per_minute
