"""Key sets fetched from the tenant's jwks_url; the replay cache shared through Redis; a real
EHR simulator's token (the CDS Hooks Sandbox, captured) verified with its published keys."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from tests.conftest import FIXTURES
from tests.security.conftest import JWKS_URL, Keys, bearer, encounter_start, make_token

HOOK = "/cds-services/allergy-documentation"
REDIS_URL = "redis://127.0.0.1:6379/10"
# This module flushes a Redis database of its own (`make pytest` keeps a module's tests on one
# worker).


def test_keys_fetched_from_the_tenants_jwks_url(
    secure_app: Callable[..., TestClient], keys: Keys
) -> None:
    served = {"set": keys.jwks(), "up": True}
    fetches: list[str] = []

    def jwks(request: httpx.Request) -> httpx.Response:
        fetches.append(str(request.url))
        if not served["up"]:
            return httpx.Response(503)
        return httpx.Response(200, json=served["set"])

    with secure_app(tenant={"jwks": None}, jwks=jwks) as client:
        ok = client.post(HOOK, json=encounter_start(), headers=bearer(make_token(keys, HOOK)))
        assert ok.status_code == 200 and fetches == [JWKS_URL]
        # A new key (rotation) is picked up by refetching on the unknown kid.
        served["set"] = keys.jwks((keys.other_ec, "ec-2", "ES384"))
        rotated = make_token(keys, HOOK, kid="ec-2", key=keys.other_ec)
        assert client.post(HOOK, json=encounter_start(), headers=bearer(rotated)).status_code == 401
        # …but not within the minute: the first attempt was made at start-up.
        assert len(fetches) == 1


def test_unknown_kid_refetch_is_rate_limited_and_cache_survives_outage(keys: Keys) -> None:
    import asyncio

    from cds_service.security.jwks import KeyStore
    from cds_service.security.tenants import Tenant

    now = {"t": 0.0}
    served: dict[str, Any] = {"set": keys.jwks(), "up": True}
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json=served["set"]) if served["up"] else httpx.Response(503)

    tenant = Tenant(id="t", issuer="https://i.example", jwks_url=JWKS_URL)

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            store = KeyStore(client, ttl=3600, refetch_interval=60, clock=lambda: now["t"])
            assert await store.key(tenant, "ec-1") is not None and len(calls) == 1
            assert await store.key(tenant, "rotated") is None and len(calls) == 1  # too soon
            now["t"] = 61
            served["set"] = keys.jwks((keys.other_ec, "rotated", "ES384"))
            assert await store.key(tenant, "rotated") is not None and len(calls) == 2
            for _ in range(20):  # a stream of bogus kids: at most one fetch a minute
                await store.key(tenant, "bogus")
            assert len(calls) == 2
            served["up"] = False
            now["t"] = 4000  # the cached set is stale and the key server is down
            assert await store.key(tenant, "ec-1") is not None  # served from the cache
            assert len(calls) == 3

    asyncio.run(run())


@pytest.fixture
def redis_db() -> Any:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_replay_refused_across_replicas_sharing_redis(
    secure_app: Callable[..., TestClient], keys: Keys, redis_db: redis.Redis
) -> None:
    token = make_token(keys, HOOK)
    with secure_app(redis_url=REDIS_URL) as first, secure_app(redis_url=REDIS_URL) as second:
        assert first.post(HOOK, json=encounter_start(), headers=bearer(token)).status_code == 200
        replay = second.post(HOOK, json=encounter_start(), headers=bearer(token))
    assert replay.status_code == 401
    assert len(redis_db.keys("cds:jti:*")) == 1


async def _no_cards(call: HookCall) -> ServiceResult:
    return ServiceResult()


@pytest.mark.parametrize(
    ("name", "jku_as", "accepted"),
    [
        ("captured-patient-view.json", "jwks_url", True),
        ("captured-order-select.json", "jwks_url", True),
        # Static keys and the issuer's published URL allow-listed: accepted, never fetched.
        ("captured-patient-view.json", "jku_allowed", True),
        # Static keys alone: a jku nobody configured is refused.
        ("captured-patient-view.json", None, False),
    ],
)
def test_the_cds_hooks_sandbox_token_verifies(
    tmp_path: Path, name: str, jku_as: str | None, accepted: bool
) -> None:
    """A real client's ES384 token, checked against its published key set, at its own iat;
    its `jku` accepted when it is the tenant's `jwks_url` or in its `jku_allowed`."""
    captured = json.loads((FIXTURES / "cds-hooks" / "sandbox-client" / name).read_text())
    token = captured["headers"]["Authorization"].removeprefix("Bearer ")
    import jwt

    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)
    jwks = json.loads(
        (FIXTURES / "cds-hooks" / "sandbox-client" / "sandbox-public-jwks.json").read_text()
    )
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        yaml.safe_dump(
            {
                "tenants": [
                    {
                        "id": "sandbox",
                        "issuer": claims["iss"],
                        "jwks": jwks,
                        "algorithms": ["ES384"],
                        **(
                            {}
                            if jku_as is None
                            else {
                                jku_as: header["jku"] if jku_as == "jwks_url" else [header["jku"]]
                            }
                        ),
                    }
                ]
            }
        )
    )
    service_id = captured["path"].rsplit("/", 1)[-1]
    hook = captured["body"]["hook"]
    service = ServiceDefinition(
        id=service_id,
        title="Capture",
        description="Sandbox capture",
        hooks=(hook,),
        evaluate=_no_cards,
    )
    base = claims["aud"].removesuffix(captured["path"])
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/f.db",
        auth="required",
        tenants_file=tenants,
        public_base_url=base,
    )
    app = create_app(settings, services=[service], auth_clock=lambda: claims["iat"] + 5)
    with TestClient(app) as client:
        ok = client.post(captured["path"], json=captured["body"], headers=bearer(token))
        again = client.post(captured["path"], json=captured["body"], headers=bearer(token))
    if not accepted:
        assert ok.status_code == 401
        return
    assert ok.status_code == 200, ok.text
    assert again.status_code == 401  # its jti is spent
