"""Benchmark: a score-dependent hook call with a cold and a warm score cache.

    python bench/score_cache.py [--calls N] [--redis redis://127.0.0.1:6379/13]

Darwin McLaughlin's chart is opened (patient-view on `preventive-care`, whose statin and atrial
fibrillation rules read the ASCVD and CHA2DS2-VASc scores), through the whole app in process
(routing, validation, prefetch, scores, rules, serialisation).

1. All data prefetched. Cold: both cache levels are emptied before each call, so the scores are
   computed from the request. Redis: only the in-process level is emptied. Warm: in-process hit.
2. The EHR sends the rules' data but not the scores' (vitals, labs, conditions, medications), and
   its FHIR server takes `--fhir-latency` to answer. Cold: the service fetches the scores' data
   and computes them. Warm: a cached (e.g. precomputed) result exists, so nothing is fetched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from cds_service.scores.provider import SCORE_PREFETCH

SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "fhir-r4" / "synthea"
DARWIN = SYNTHEA / "Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--fhir-latency", type=float, default=0.3, metavar="SECONDS")
    args = parser.parse_args()

    server = FhirDouble.from_bundle(json.loads(DARWIN.read_text()), record=False)
    patient_id = server.resources("Patient")[0]["id"]
    now = datetime(2019, 10, 10, 23, 0, tzinfo=UTC)
    settings = Settings(
        database_url="sqlite:///:memory:",
        builtin_services=False,
        redis_url=args.redis,
        rules_reload_seconds=0,
    )

    async def slow_fhir(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(args.fhir_latency)
        return server.handle(request)

    app = create_app(settings, clock=lambda: now, fhir_transport=httpx.MockTransport(slow_fhir))
    service = app.state.cds.registry.get("preventive-care")
    templates = {k: spec.template for k, spec in service.prefetch_for("patient-view").items()}
    prefetch = {
        key: server.get(template.replace("{{context.patientId}}", patient_id))
        for key, template in templates.items()
    }
    context = {"userId": "Practitioner/1", "patientId": patient_id}
    full = json.dumps(
        {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": context,
            "prefetch": prefetch,
        }
    )
    partial = json.dumps(
        {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": server.base_url,
            "context": context,
            "prefetch": {k: v for k, v in prefetch.items() if k not in SCORE_PREFETCH},
        }
    )
    print(
        f"request with all data {len(full) / 1024:.0f} KiB ({len(prefetch)} prefetch keys), "
        f"without the scores' data {len(partial) / 1024:.0f} KiB; "
        f"FHIR server latency {args.fhir_latency * 1000:.0f} ms\n"
    )
    flush = redis.Redis.from_url(args.redis)
    results = {}
    with TestClient(app) as client:
        cache = app.state.cds.score_cache

        def call(payload: str) -> float:
            started = time.perf_counter()
            response = client.post(
                "/cds-services/preventive-care",
                content=payload,
                headers={"content-type": "application/json"},
            )
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.text
            return elapsed

        scenarios = [
            ("all data sent, cache cold", full, "both", args.calls),
            ("all data sent, Redis hit", full, "local", args.calls),
            ("all data sent, local hit", full, "none", args.calls),
            ("scores' data fetched, cold", partial, "both", max(args.calls // 10, 5)),
            ("scores' data cached, warm", partial, "none", args.calls),
        ]
        for label, payload, empty, count in scenarios:
            times = []
            call(payload)  # settle (and, for the warm runs, fill the cache)
            for _ in range(count):
                if empty in ("both", "local"):
                    cache._local.clear()
                if empty == "both":
                    flush.flushdb()
                times.append(call(payload))
            times.sort()
            results[label] = (statistics.median(times), times[int(0.95 * (len(times) - 1))])
    flush.flushdb()
    flush.close()
    print(f"{'scenario':<30}{'median ms':>10}{'p95 ms':>9}")
    for label, (median, p95) in results.items():
        print(f"{label:<30}{median:>10.2f}{p95:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
