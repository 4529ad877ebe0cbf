"""Rate limits shared across replicas through Redis (a real Redis, as in production), and each
process's own limiter while Redis is down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.security.ratelimit import RateLimiter, SharedRateLimiter

REDIS_URL = "redis://127.0.0.1:6379/11"
# This module flushes a Redis database of its own (`make pytest` keeps a module's tests on one
# worker).


@pytest.fixture
def shared_redis() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


def test_two_replicas_enforce_one_limit(shared_redis: str) -> None:
    async def run() -> list[float]:
        replicas = [SharedRateLimiter(shared_redis), SharedRateLimiter(shared_redis)]
        tenant = f"tenant-{uuid.uuid4().hex}"
        try:
            return [await replicas[i % 2].allow(tenant, 5) for i in range(8)]
        finally:
            for replica in replicas:
                await replica.close()

    waits = asyncio.run(run())
    assert waits[:5] == [0.0] * 5  # five calls, alternating between the replicas
    assert all(0 < wait <= 60 for wait in waits[5:])  # then refused by either


def test_the_window_slides(shared_redis: str) -> None:
    """A call leaves the count 60 s after it was made (Redis's clock; here the window is
    shortened by writing an old entry)."""

    async def run() -> tuple[float, float]:
        limiter = SharedRateLimiter(shared_redis)
        try:
            tenant = "sliding"
            first = await limiter.allow(tenant, 1)
            # Age the recorded call by 61 s, as if it had been made a minute ago.
            client = redis.Redis.from_url(shared_redis)
            entries: list[tuple[bytes, float]] = client.zrange(  # type: ignore[assignment]
                f"cds:rate:{tenant}", 0, -1, withscores=True
            )
            [(member, score)] = entries
            client.zadd(f"cds:rate:{tenant}", {member: score - 61})
            return first, await limiter.allow(tenant, 1)
        finally:
            await limiter.close()

    assert asyncio.run(run()) == (0.0, 0.0)


def test_tenants_are_counted_apart(shared_redis: str) -> None:
    async def run() -> list[float]:
        limiter = SharedRateLimiter(shared_redis)
        try:
            return [await limiter.allow(t, 1) for t in ("a", "b", "a")]
        finally:
            await limiter.close()

    first_a, first_b, second_a = asyncio.run(run())
    assert first_a == first_b == 0.0 and second_a > 0


def test_redis_down_each_process_limits_on_its_own(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> tuple[list[float], str]:
        limiter = SharedRateLimiter("redis://127.0.0.1:1/0", timeout=0.1)  # nothing listens
        try:
            waits = [await limiter.allow("t", 2) for _ in range(3)]
            return waits, limiter.state
        finally:
            await limiter.close()

    waits, state = asyncio.run(run())
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0  # this process's bucket still limits
    assert state.startswith("local to this process: Redis unreachable")
    assert "rate limits: Redis unavailable" in caplog.text


def test_local_limiter_without_redis() -> None:
    limiter = RateLimiter(clock=lambda: 100.0)
    waits = [asyncio.run(limiter.allow("t", 2)) for _ in range(3)]
    assert waits[:2] == [0.0, 0.0] and waits[2] == pytest.approx(30.0)
    assert limiter.state == "local to this process"


def test_readyz_says_where_limits_are_counted(tmp_path: Path, shared_redis: str) -> None:
    from fastapi.testclient import TestClient

    shared = Settings(database_url=f"sqlite:///{tmp_path}/a.db", redis_url=shared_redis)
    with TestClient(create_app(shared)) as client:
        assert client.get("/readyz").json()["checks"]["rate_limits"] == "ok"
    alone = Settings(database_url=f"sqlite:///{tmp_path}/b.db")
    with TestClient(create_app(alone)) as client:
        response = client.get("/readyz")
    assert response.json()["checks"]["rate_limits"] == "local to this process"
    assert response.status_code == 200  # informational: limits still apply
