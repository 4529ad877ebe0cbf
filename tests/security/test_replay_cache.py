"""The `jti` replay cache against a real Redis: once per key across replicas, through a
connection Redis dropped (as after a restart), and in process when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import redis

from cds_service.security.replay import ReplayCache

# A Redis database of this module's own (`make pytest` keeps a module's tests on one worker).
REDIS_URL = "redis://127.0.0.1:6379/8"


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_a_key_is_used_once_across_replicas_and_kept_for_its_ttl(redis_db: redis.Redis) -> None:
    async def run() -> list[bool]:
        first, second = ReplayCache(REDIS_URL), ReplayCache(REDIS_URL)
        try:
            return [
                await first.first_use("tenant:jti-1", 120),
                await first.first_use("tenant:jti-1", 120),
                await second.first_use("tenant:jti-1", 120),  # another replica
                await second.first_use("tenant:jti-2", 0),  # kept one second at least
            ]
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(run()) == [True, False, False, True]
    assert 110 <= redis_db.ttl("cds:jti:tenant:jti-1") <= 120
    assert 0 < redis_db.ttl("cds:jti:tenant:jti-2") <= 1
    assert redis_db.get("cds:jti:tenant:jti-1") == b"1"


def test_a_connection_redis_dropped_is_replaced_not_trusted(
    redis_db: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis closes the cache's pooled connection (as a restart does): the next check runs on a
    new connection, in Redis, not in this process's memory."""

    async def run() -> list[bool]:
        cache, other = ReplayCache(REDIS_URL), ReplayCache(REDIS_URL)
        try:
            answers = [await cache.first_use("t:a", 60)]
            pool = cache._redis.connection_pool
            (pooled,) = pool._available_connections
            host, port = pooled._writer.get_extra_info("sockname")[:2]
            assert redis_db.client_kill(f"{host}:{port}")
            answers.append(await cache.first_use("t:b", 60))
            answers.append(await other.first_use("t:b", 60))  # recorded in Redis: refused
            answers.append(await cache.first_use("t:a", 60))
            return answers
        finally:
            await cache.close()
            await other.close()

    with caplog.at_level(logging.WARNING, logger="cds_service.security.replay"):
        assert asyncio.run(run()) == [True, True, False, False]
    assert not [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert redis_db.exists("cds:jti:t:a", "cds:jti:t:b") == 2


def test_without_redis_the_check_holds_in_this_process(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> list[bool]:
        cache = ReplayCache("redis://127.0.0.1:9/0", timeout=0.5)  # nothing listens there
        try:
            return [await cache.first_use("t:x", 60), await cache.first_use("t:x", 60)]
        finally:
            await cache.close()

    with caplog.at_level(logging.WARNING, logger="cds_service.security.replay"):
        assert asyncio.run(run()) == [True, False]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings and all("Redis unavailable" in w for w in warnings)
    assert all("t:x" not in w for w in warnings)  # the key (tenant and jti) is not logged
