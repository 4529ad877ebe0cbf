"""Two replicas behind nginx share their state through PostgreSQL and Redis.

Starts `deploy/topology.py` (two `cds-service serve` processes, Debian's nginx in front) on a fresh
PostgreSQL database and Redis database 14, with authentication on, and shows that a score cached
through one replica is a cache hit through the other, that a `jti` seen by one is refused by the
other, that a card issued by one takes feedback through the other, that an override sent
through one snoozes its rule on the other, and that killing a replica under load loses no call
(nginx retries it on the survivor).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cds_service.fhir_double import FhirDouble
from cds_service.services.registry import shared_id
from deploy.topology import Topology, drop_database
from tests.present import in_the_present

ROOT = Path(__file__).resolve().parents[2]
SYNTHEA = ROOT.parent / "shared" / "fixtures" / "fhir-r4" / "synthea"
DARWIN = SYNTHEA / "Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json"
ISSUER = "https://ehr.topology.example.org"
# A second tenant, with a rate limit (the first has none, so the other tests are not limited).
LIMITED_ISSUER = "https://limited.topology.example.org"
LIMIT = 4
REDIS_DB = 14
SERVICE = "preventive-care"
NGINX = "/usr/sbin/nginx"

pytestmark = [
    pytest.mark.topology,
    pytest.mark.skipif(
        not Path(NGINX).exists(),
        reason=f"{NGINX} is absent (apt-get install -y nginx): the topology needs Debian's nginx",
    ),
]


class Env:
    """The running topology, the EHR's signing key and the data of one patient-view call."""

    def __init__(self, topo: Any, key: ec.EllipticCurvePrivateKey, redis_url: str) -> None:
        self.topo = topo
        self.key = key
        self.redis = redis.Redis.from_url(redis_url)
        self.body: dict[str, Any] = {}

    def token(self, path: str, **claims: Any) -> str:
        """A JWT for `path` on the public (nginx) URL, whichever replica it is sent to."""
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": self.topo.url + path,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        headers = {"kid": "ec-1", "typ": "JWT"}
        return jwt.encode(body, self.key, algorithm="ES384", headers=headers)

    def headers(self, path: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(path, **claims)}"}

    def call(self, base: str, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        path = f"/cds-services/{SERVICE}"
        payload = {**(body or self.body), "hookInstance": str(uuid.uuid4())}
        headers = kw.pop("headers", None) or self.headers(path)
        return httpx.post(base + path, json=payload, headers=headers, timeout=30, **kw)

    def score_keys(self) -> set[bytes]:
        return set(self.redis.scan_iter(match="cds:score:v1:*", count=1000))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    tenant = {
        "id": "hospital-topology",
        "issuer": ISSUER,
        "jwks": {"keys": [{**jwk, "kid": "ec-1", "alg": "ES384", "use": "sig"}]},
        "algorithms": ["ES384"],
    }
    tenants = tmp_path_factory.mktemp("topology") / "tenants.yaml"
    limited = {
        **tenant,
        "id": "hospital-limited",
        "issuer": LIMITED_ISSUER,
        "rate_limit_per_minute": LIMIT,
    }
    tenants.write_text(yaml.safe_dump({"tenants": [tenant, limited]}))
    database = f"cds_topology_test_{secrets.token_hex(4)}"
    topo = Topology(tenants, replicas=2, database=database, redis_db=REDIS_DB)
    environment = Env(topo, key, topo.redis_url)
    environment.redis.flushdb()
    try:
        with topo:
            discovery = httpx.get(
                topo.url + "/cds-services", headers=environment.headers("/cds-services")
            )
            assert discovery.status_code == 200, discovery.text
            templates = next(
                s.get("prefetch", {})
                for s in discovery.json()["services"]
                if shared_id(s["id"], s["hook"]) == SERVICE and s["hook"] == "patient-view"
            )
            local = FhirDouble.from_bundle(in_the_present(json.loads(DARWIN.read_text())))
            pid = local.resources("Patient")[0]["id"]
            environment.body = {
                "hook": "patient-view",
                "hookInstance": str(uuid.uuid4()),
                "context": {"userId": "Practitioner/topology", "patientId": pid},
                "prefetch": {
                    name: local.get(template.replace("{{context.patientId}}", pid))
                    for name, template in templates.items()
                },
            }
            yield environment
    finally:
        environment.redis.flushdb()
        environment.redis.close()
        drop_database(database)


def redis_hits(base: str) -> float | None:
    """The replica's `cds_score_cache_total{level="redis",result="hit"}`; None without /metrics."""
    try:
        response = httpx.get(base + "/metrics", timeout=5)
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    for line in response.text.splitlines():
        if (
            line.startswith("cds_score_cache_total{")
            and re.search(r'level="redis"', line)
            and re.search(r'result="hit"', line)
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_score_cached_through_one_replica_is_a_hit_through_the_other(env: Env) -> None:
    replica_a, replica_b = env.topo.replicas
    before = env.score_keys()
    hits_before = redis_hits(replica_b)

    first = env.call(replica_a)
    assert first.status_code == 200, first.text
    after_a = env.score_keys()
    computed = {k for k in after_a - before if not k.endswith(b":latest")}
    assert computed, "replica A stored no score in Redis"

    second = env.call(replica_b)
    assert second.status_code == 200, second.text
    summaries = [sorted(c["summary"] for c in r.json()["cards"]) for r in (first, second)]
    assert summaries[0] == summaries[1]
    # B computed nothing: it wrote no new fingerprint key, it read A's.
    assert env.score_keys() == after_a
    hits_after = redis_hits(replica_b)
    if hits_before is not None and hits_after is not None:
        assert hits_after >= hits_before + len(computed)


def test_jti_accepted_by_one_replica_is_refused_by_the_other(env: Env) -> None:
    replica_a, replica_b = env.topo.replicas
    headers = env.headers(f"/cds-services/{SERVICE}")
    assert env.call(replica_a, headers=headers).status_code == 200
    replay = env.call(replica_b, headers=headers)
    assert replay.status_code == 401, replay.text
    # and a fresh token is still welcome on B
    assert env.call(replica_b).status_code == 200


def test_a_tenants_rate_limit_is_one_limit_across_replicas(env: Env) -> None:
    """Counted in the shared Redis: calls alternating between the replicas are refused once the
    tenant's limit is reached in total (counted per process, each replica would take all of
    these: neither gets more than the limit)."""
    replica_a, replica_b = env.topo.replicas
    path = f"/cds-services/{SERVICE}"
    statuses = []
    for i in range(LIMIT + 3):
        base = (replica_a, replica_b)[i % 2]
        answer = env.call(base, headers=env.headers(path, iss=LIMITED_ISSUER))
        statuses.append(answer.status_code)
    assert statuses == [200] * LIMIT + [429] * 3, statuses
    ready = [httpx.get(base + "/readyz").json()["checks"] for base in (replica_a, replica_b)]
    assert [checks["rate_limits"] for checks in ready] == ["ok", "ok"]


def test_feedback_written_through_one_replica_is_known_to_the_other(env: Env) -> None:
    """A card issued by one replica takes feedback through the other; the feedback stored through
    one is a duplicate through the other; a card neither issued is refused by both."""
    replica_a, replica_b = env.topo.replicas
    issued = env.call(replica_a)
    assert issued.status_code == 200, issued.text
    card = issued.json()["cards"][0]["uuid"]
    path = f"/cds-services/{SERVICE}/feedback"

    def feedback(card: str) -> dict[str, Any]:
        item = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:05:31Z"}
        return {"feedback": [item]}

    first = httpx.post(replica_b + path, json=feedback(card), headers=env.headers(path), timeout=30)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 1, "stored": 1}
    second = httpx.post(
        replica_a + path, json=feedback(card), headers=env.headers(path), timeout=30
    )
    assert second.status_code == 200, second.text
    assert second.json() == {"received": 1, "stored": 0}
    for replica in (replica_a, replica_b):
        unknown = httpx.post(
            replica + path, json=feedback(str(uuid.uuid4())), headers=env.headers(path), timeout=30
        )
        assert unknown.status_code == 400, unknown.text


def test_an_override_through_one_replica_snoozes_the_rule_on_the_other(env: Env) -> None:
    """pneumococcal-vaccine-due (office visits: encounter-start) is snoozed a year by a
    `patient-declined` override: sent through the replica that issued the card, it counts there
    at once (that worker forgets the patient's cached overrides) and on the other, which reads
    the shared feedback table."""
    replica_a, replica_b = env.topo.replicas
    patient = f"snooze-{uuid.uuid4().hex[:8]}"
    visit = {
        "resourceType": "Encounter",
        "id": "visit-1",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{patient}"},
    }
    body = {
        "hook": "encounter-start",
        "context": {
            "userId": "Practitioner/topology",
            "patientId": patient,
            "encounterId": "visit-1",
        },
        "prefetch": {
            "encounter": visit,
            "patient": {"resourceType": "Patient", "id": patient, "birthDate": "1931-04-18"},
            "immunizations": {"resourceType": "Bundle", "type": "searchset", "entry": []},
            # What a revision of the rule may read besides (its exclusions): known empty.
            "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
            "procedures": {"resourceType": "Bundle", "type": "searchset", "entry": []},
        },
    }

    def pneumococcal(replica: str) -> list[dict[str, Any]]:
        response = env.call(replica, body)
        assert response.status_code == 200, response.text
        cards: list[dict[str, Any]] = response.json()["cards"]
        return [c for c in cards if c["summary"].startswith("No pneumococcal vaccine")]

    [card] = pneumococcal(replica_a)
    path = f"/cds-services/{SERVICE}/feedback"
    item = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {
            "reason": {"code": "patient-declined", "system": "urn:cds-service:override-reason"}
        },
        "outcomeTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    sent = httpx.post(
        replica_a + path, json={"feedback": [item]}, headers=env.headers(path), timeout=30
    )
    assert sent.status_code == 200, sent.text
    assert pneumococcal(replica_b) == []
    assert pneumococcal(replica_a) == []


def test_killing_a_replica_under_load_loses_no_call(env: Env) -> None:
    """Every call answers 200, except the few in flight on the killed replica after it had
    already recorded their `jti`: nginx retries them on the survivor, which must refuse a
    replayed `jti` (401). Those are not calls a load balancer can retry (the EHR must sign a new
    JWT); each one is checked against the survivor's log and they are at most the in-flight ones.
    """
    total, kill_after, concurrency = 200, 50, 8
    path = f"/cds-services/{SERVICE}"
    done = 0
    lock = threading.Lock()
    reached = threading.Event()

    def one(_: int) -> tuple[int | str, str]:
        nonlocal done
        jti = uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {env.token(path, jti=jti)}"}
        try:
            status: int | str = env.call(env.topo.url, headers=headers).status_code
        except httpx.TransportError as exc:
            status = type(exc).__name__
        with lock:
            done += 1
            if done >= kill_after:
                reached.set()
        return status, jti

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(one, i) for i in range(total)]
        assert reached.wait(timeout=300), "the load did not reach the kill point"
        env.topo.kill(0)
        killed_at = done
        results = [future.result() for future in futures]

    assert not env.topo.alive(0)
    assert killed_at < total, "the replica was killed after the load ended"
    survivor_log = env.topo.log_path(1).read_text(errors="replace")
    replayed = [
        jti
        for status, jti in results
        if status == 401 and f"jti replayed iss={ISSUER} jti={jti}" in survivor_log
    ]
    failures = [(status, jti) for status, jti in results if status != 200 and jti not in replayed]
    assert not failures, f"{len(failures)} calls failed: {failures[:10]}"
    assert len(replayed) <= concurrency, f"{len(replayed)} retried calls refused as replays"
    assert httpx.get(env.topo.url + "/healthz", timeout=5).status_code == 200
    assert env.call(env.topo.url).status_code == 200
