"""The two-level score cache, against the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from cds_service.clock import frozen_clock
from cds_service.scores.cache import ABSENT_SECONDS, ScoreCache
from cds_service.scores.fhir_inputs import PatientRecord
from cds_service.scores.provider import ScoreProvider, cache_key
from tests.conftest import load_fixture

REDIS_URL = "redis://127.0.0.1:6379/15"
# This module flushes a Redis database of its own (`make pytest` keeps a module's tests on one
# worker).
DARWIN = "fhir-r4/synthea/Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json"
AT = datetime(2019, 10, 10, 23, 0, tzinfo=UTC)


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def darwin() -> list[dict]:  # type: ignore[type-arg]
    return [e["resource"] for e in load_fixture(DARWIN)["entry"]]


def test_local_then_redis_then_miss(redis_db: redis.Redis) -> None:
    async def run() -> None:
        first = ScoreCache(redis_url=REDIS_URL)
        second = ScoreCache(redis_url=REDIS_URL)  # another replica
        try:
            key = f"test:{secrets.token_hex(4)}"
            assert await first.get(key) is None
            await first.set(key, {"value": 1.5})
            assert await first.get(key) == {"value": 1.5}
            assert await second.get(key) == {"value": 1.5}  # through Redis
            assert await second.get(key) == {"value": 1.5}  # now local
            assert (first.stats.local_hits, first.stats.misses) == (1, 1)
            assert (second.stats.redis_hits, second.stats.local_hits) == (1, 1)
        finally:
            await first.close()
            await second.close()

    asyncio.run(run())
    assert redis_db.dbsize() == 1


def test_a_key_redis_did_not_hold_is_not_asked_for_again_for_a_while(
    redis_db: redis.Redis,
) -> None:
    """A miss in Redis is remembered for `ABSENT_SECONDS` (a patient whose score no rule computed
    would otherwise cost every call a round trip): another replica's result under that key is
    seen once that time has passed; a result stored here is seen at once; a Redis failure is not
    taken for an absent key."""
    clock = [100.0]

    async def run() -> None:
        here = ScoreCache(redis_url=REDIS_URL, clock=lambda: clock[0])
        other = ScoreCache(redis_url=REDIS_URL)  # another replica
        try:
            assert await here.get("latest") is None
            await other.set("latest", {"value": 4})
            assert await here.get("latest") is None  # not asked again yet
            clock[0] += ABSENT_SECONDS - 1
            assert await here.get("latest") is None
            clock[0] += 2
            assert await here.get("latest") == {"value": 4}
            assert here.stats.redis_hits == 1

            assert await here.get("mine") is None
            await here.set("mine", {"value": 5})
            assert await here.get("mine") == {"value": 5}

            good = here._redis
            here._redis = type(good).from_url("redis://127.0.0.1:1/0")  # nothing listens there
            assert await here.get("while-down") is None
            await here._redis.aclose()
            here._redis = good
            await other.set("while-down", {"value": 6})
            clock[0] += 6  # past the retry delay, well within ABSENT_SECONDS
            assert await here.get("while-down") == {"value": 6}
        finally:
            await here.close()
            await other.close()

    asyncio.run(run())


def test_redis_down_falls_back_and_recovers(redis_db: redis.Redis) -> None:
    clock = [0.0]

    async def run() -> None:
        cache = ScoreCache(redis_url=REDIS_URL, retry_after=5.0, clock=lambda: clock[0])
        try:
            good = cache._redis
            cache._redis = type(good).from_url("redis://127.0.0.1:1/0")  # nothing listens there
            await cache.set("k", {"value": 1})  # stored locally, Redis error counted
            assert await cache.get("k") == {"value": 1}
            assert cache.stats.redis_errors == 1
            assert await cache.get("other") is None  # Redis skipped while down: no new error
            assert cache.stats.redis_errors == 1
            await cache._redis.aclose()
            cache._redis = good  # Redis is back
            clock[0] = 6.0
            await cache.set("k2", {"value": 2})
            assert redis_db.get("k2") is not None
        finally:
            await cache.close()

    asyncio.run(run())


def test_provider_caches_by_inputs_and_serves_the_latest(redis_db: redis.Redis) -> None:
    resources = darwin()
    patient = "429f802a-51cc-48c3-85d4-1a72bb718fc2"

    async def run() -> None:
        cache = ScoreCache(redis_url=REDIS_URL)
        provider = ScoreProvider(cache, clock=frozen_clock(AT))
        try:
            first = await provider.score("ascvd", resources, AT, patient_id=patient)
            again = await provider.score("ascvd", resources, AT, patient_id=patient)
            assert first["source"] == "computed" and again["source"] == "cache"
            assert first["value"] == again["value"] and first["value"] > 7.5
            # A changed lab is a new key: never the old score.
            changed = [dict(r) for r in resources]
            for r in changed:
                if (
                    r["resourceType"] == "Observation"
                    and r["code"]["coding"][0]["code"] == "2093-3"
                ):
                    r["valueQuantity"] = {**r["valueQuantity"], "value": 300}
            recomputed = await provider.score("ascvd", changed, AT, patient_id=patient)
            assert recomputed["source"] == "computed" and recomputed["value"] != first["value"]
            # Without the data, the latest result serves, and says so.
            patient_only = [r for r in resources if r["resourceType"] == "Patient"]
            failed = {"Observation": "Observations could not be loaded (ReadTimeout)"}
            record = PatientRecord(patient_only, AT, failed)
            latest = await provider.score("ascvd", record, AT, patient_id=patient)
            assert latest["source"] == "precomputed" and latest["value"] == recomputed["value"]
            assert "could not obtain" in latest["note"]
            # The same record with the data loaded and absent: computed (not computable), never
            # the latest result.
            absent = await provider.score("ascvd", patient_only, AT, patient_id=patient)
            assert absent["source"] == "computed" and absent["value"] is None
            assert "missing input" in absent["reason"]
        finally:
            await cache.close()

    asyncio.run(run())
    assert redis_db.get(cache_key("default", patient, "ascvd", "latest")) is not None


def test_a_call_that_could_not_load_the_data_sees_the_latest_another_replica_just_stored(
    redis_db: redis.Redis,
) -> None:
    """Redis's recent "not there" is not trusted for the fallback: when this replica lately found
    no latest result, and another replica then stored one, a call whose data failed to load here
    still gets that result rather than "not computable"."""
    resources = darwin()
    patient = "429f802a-51cc-48c3-85d4-1a72bb718fc2"
    failed = {"Observation": "Observations could not be loaded (ReadTimeout)"}
    record = PatientRecord([r for r in resources if r["resourceType"] == "Patient"], AT, failed)

    async def run() -> tuple[bool, dict[str, Any]]:
        here = ScoreProvider(ScoreCache(redis_url=REDIS_URL), clock=frozen_clock(AT))
        other = ScoreProvider(ScoreCache(redis_url=REDIS_URL), clock=frozen_clock(AT))
        try:
            known = await here.has_latest(["ascvd"], patient_id=patient)  # Redis: not there
            await other.score("ascvd", resources, AT, patient_id=patient)  # now it is
            return known, await here.score("ascvd", record, AT, patient_id=patient)
        finally:
            await here.cache.close()
            await other.cache.close()

    known, fallback = asyncio.run(run())
    assert known is False
    assert fallback["source"] == "precomputed" and fallback["value"] > 7.5


def test_a_result_with_unknown_inputs_is_never_cached_nor_served_from_the_cache() -> None:
    """The inputs' key of a record whose conditions failed would be that of a record without
    conditions: the cached "none recorded" result must not be served for it, and its own
    not-computable result is stored neither under that key nor as the patient's latest."""
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-01-01"}
    why = "Conditions could not be loaded (scoreConditions: deadline exceeded)"

    async def run() -> None:
        cache = ScoreCache()
        provider = ScoreProvider(cache, clock=frozen_clock(AT))
        known = await provider.score("cha2ds2-vasc", [patient], AT, patient_id="p1")
        assert known["source"] == "computed" and "none recorded" in known["reason"]
        stored = dict(cache._local)
        failed = await provider.score(
            "cha2ds2-vasc", PatientRecord([patient], AT, {"Condition": why}), AT, patient_id="p1"
        )
        # The latest result (computed with the conditions loaded) serves, and says so.
        assert failed["source"] == "precomputed" and "could not obtain" in failed["note"]
        other = await provider.score(
            "cha2ds2-vasc", PatientRecord([patient], AT, {"Condition": why}), AT, patient_id="p2"
        )
        assert other["source"] == "computed" and other["value"] is None
        assert other["reason"] == f"not computable: {why}" and other["unknown"]
        assert dict(cache._local) == stored  # nothing written for either
        await cache.close()

    asyncio.run(run())


def test_a_record_no_reader_can_read_makes_the_score_not_computable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever shape of FHIR JSON a score's readers do not expect (an EHR's data is validated by
    nobody), the score is not computable on that call, with why, and nothing is cached; the
    log names the score and the error's type, never its message (it may quote the record)."""
    from cds_service.scores import SCORES
    from cds_service.scores.provider import UNREADABLE

    def unreadable(resources: object, at: datetime) -> dict[str, object]:
        raise TypeError("unhashable type: 'list' in Patient/secret-42")

    monkeypatch.setattr(SCORES["cha2ds2-vasc"], "inputs_from_fhir", unreadable)
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-01-01"}

    async def run() -> None:
        cache = ScoreCache()
        provider = ScoreProvider(cache, clock=frozen_clock(AT))
        result = await provider.score("cha2ds2-vasc", [patient], AT, patient_id="p1")
        assert result["value"] is None and result["source"] == "computed"
        assert result["reason"] == f"not computable: {UNREADABLE}"
        assert result["unknown"] == {"record": UNREADABLE}
        assert dict(cache._local) == {}
        await cache.close()

    asyncio.run(run())
    assert "score cha2ds2-vasc: the record could not be read (TypeError)" in caplog.text
    assert "secret-42" not in caplog.text
