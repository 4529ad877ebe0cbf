"""Where a hook call's CPU goes, stage by stage, in the service as production configures it.

    python -m bench.stages [--calls 360] [--workload patient-view] [--database postgresql]

The app is built as `cds-service serve` builds it (JWT verification on with a test tenant, Redis
for the score cache and replay protection, a fresh PostgreSQL database for the audit log, the
bundled rules) and called in this process through ASGI directly, one call at a time, with the
bodies and signed tokens of `bench/load.py` (every Synthea fixture patient, the prefetch the
service's templates ask for). The first pass measures CPU per call without a profiler; the second
runs under cProfile, whose cumulative time per stage function gives each stage's share of the
profiled run (whose few waits on Redis and PostgreSQL count in "the rest"), shown scaled to the
unprofiled CPU. The profiler slows Python code more than C code, so shares lean towards the
Python stages. Uvicorn's HTTP parsing is not included (the floor app has the same).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from cryptography.hazmat.primitives.asymmetric import ec

from bench.load import REDIS_URL, SERVICE_OF, bodies, tenant_file, tokens
from deploy.topology import create_database, drop_database

BASE = "http://bench.local"
Function = tuple[str, str]  # (file name suffix, function name) as cProfile names it
# Stage → the functions whose cumulative CPU is the stage, minus the functions of other stages
# they call (so that no time counts twice).
STAGES: dict[str, tuple[tuple[Function, ...], tuple[Function, ...]]] = {
    "JSON parse (orjson)": ((("~", "<orjson.loads>"),), ()),
    "JSON nesting check": ((("cds_service/jsondepth.py", "json_depth_exceeds"),), ()),
    "request model (pydantic)": (
        (("api/body.py", "parse_body"),),
        (("api/body.py", "read_json_body"),),
    ),
    "JWT verification (replay check included)": ((("security/jwt_auth.py", "verify"),), ()),
    "audit row": ((("api/audit.py", "_write"),), ()),
    "risk scores (inputs, fingerprint, cache)": ((("rules/service.py", "provide"),), ()),
    "rules (index, FHIRPath, selections, cards)": (
        (("rules/service.py", "evaluate"),),
        (("rules/service.py", "provide"),),
    ),
    "response (cards to JSON)": ((("~", "<orjson.dumps>"),), ()),
}


async def call(
    app: Any, path: str, token: str, body: bytes, method: str = "POST"
) -> tuple[int, bytes]:
    """One request straight into the ASGI app (no HTTP client, no server)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench.local"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("bench.local", 80),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def stage_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Each stage's profiled CPU seconds."""
    table: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]

    def cumulative(functions: tuple[Function, ...]) -> float:
        return sum(
            row[3]
            for (filename, _, name), row in table.items()
            if any(filename.endswith(suffix) and name == fn for suffix, fn in functions)
        )

    return {
        stage: cumulative(included) - cumulative(excluded)
        for stage, (included, excluded) in STAGES.items()
    }


async def measure(args: argparse.Namespace, work: Path, database_url: str) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP384R1())
    fhir_base = "http://127.0.0.1:9/fhir"  # never called: every body carries its prefetch
    os.environ.update(
        {
            "CDS_AUTH": "required",
            "CDS_TENANTS_FILE": str(tenant_file(work, key, fhir_base)),
            "CDS_PUBLIC_BASE_URL": BASE,
            "CDS_ENV": "development",
            "CDS_DATABASE_URL": database_url,
            "CDS_REDIS_URL": REDIS_URL,
            "CDS_LOG_LEVEL": "warning",
            "CDS_RULES_RELOAD_SECONDS": "0",
        }
    )
    from cds_service.config import Settings
    from cds_service.main import create_app

    redis.Redis.from_url(REDIS_URL).flushdb()
    app = create_app(Settings())
    service = SERVICE_OF[args.workload]
    path = f"/cds-services/{service}"
    async with app.router.lifespan_context(app):
        listed = tokens(key, f"{BASE}/cds-services", 1, work / "discovery-token.txt")
        _, answer = await call(app, "/cds-services", listed.read_text().strip(), b"", "GET")
        discovery = json.loads(answer)["services"]
        listing = bodies(work, discovery, fhir_base)[args.workload]
        payloads = [Path(p).read_bytes() for p in listing.read_text().split()]
        count = args.warmup + 2 * args.calls
        token_list = tokens(key, f"{BASE}{path}", count, work / "tokens.txt").read_text().split()
        next_token = iter(token_list).__next__

        per_body: list[list[float]] = [[] for _ in payloads]

        async def run(n: int, clock: Callable[[], float] = time.process_time) -> float:
            """Milliseconds per call by `clock` (CPU time unless told); CPU time per body
            is kept in `per_body`."""
            started = clock()
            for i in range(n):
                body = payloads[i % len(payloads)]
                before = time.process_time()
                status, answer = await call(app, path, next_token(), body)
                per_body[i % len(payloads)].append(time.process_time() - before)
                if status != 200:
                    raise SystemExit(f"call {i}: HTTP {status}: {answer[:300]!r}")
            return (clock() - started) / n * 1000

        await run(args.warmup)
        for kept in per_body:
            kept.clear()
        collecting = _GcClock()
        gc.callbacks.append(collecting)
        try:
            cpu_ms = await run(args.calls)
        finally:
            gc.callbacks.remove(collecting)
        bodies_ms = sorted(
            (
                (round(statistics.median(kept) * 1000, 2), len(payloads[i]) // 1024)
                for i, kept in enumerate(per_body)
                if kept
            ),
            reverse=True,
        )
        profiler = cProfile.Profile()
        profiler.enable()
        profiled_ms = await run(args.calls, time.perf_counter)  # cProfile counts wall time
        profiler.disable()
    if args.profile:
        profiler.dump_stats(args.profile)
    stats = pstats.Stats(profiler)
    seconds = stage_seconds(stats)
    profiled_total = profiled_ms * args.calls / 1000
    shares = {stage: s / profiled_total for stage, s in seconds.items()}
    return {
        "workload": args.workload,
        "calls": args.calls,
        "cpu_ms_per_call": round(cpu_ms, 3),
        "profiled_ms_per_call": round(profiled_ms, 3),
        "stages_ms": {stage: round(share * cpu_ms, 3) for stage, share in shares.items()},
        "other_ms": round(cpu_ms * (1 - sum(shares.values())), 3),
        "gc_ms_per_call": round(collecting.seconds * 1000 / args.calls, 3),
        "gc_collections": dict(collecting.collections),
        # (median CPU ms, body KB) per body, costliest first
        "bodies": bodies_ms,
    }


class _GcClock:
    """CPU spent in the garbage collector, and collections per generation (a gc callback)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections: dict[int, int] = {}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started
            generation = info["generation"]
            self.collections[generation] = self.collections.get(generation, 0) + 1


def print_report(report: dict[str, Any]) -> None:
    print(
        f"{report['workload']}: {report['cpu_ms_per_call']:.2f} ms CPU per call "
        f"({report['calls']} calls; {report['profiled_ms_per_call']:.2f} ms under the profiler)"
    )
    for stage, ms in report["stages_ms"].items():
        print(f"  {stage:<40}{ms:>7.3f} ms")
    print(f"  {'the rest (framework, middleware, I/O)':<40}{report['other_ms']:>7.3f} ms")
    costliest = ", ".join(f"{ms:.1f} ms ({kb} KB)" for ms, kb in report["bodies"][:3])
    cheapest = ", ".join(f"{ms:.1f} ms ({kb} KB)" for ms, kb in report["bodies"][-3:])
    print(f"  per body, median CPU: costliest {costliest}; cheapest {cheapest}")
    print(
        f"  garbage collection, within the above: {report['gc_ms_per_call']:.3f} ms per call "
        f"(collections by generation: {report['gc_collections']})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=360)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--workload", default="patient-view", choices=sorted(SERVICE_OF))
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--profile", type=Path, help="also save the cProfile statistics here")
    args = parser.parse_args()
    if args.workload == "missing-prefetch":
        parser.error("missing-prefetch needs the FHIR server: measure it with bench.load")
    work = Path(tempfile.mkdtemp(prefix="cds-stages-"))
    name = f"cds_stages_{os.getpid()}"
    url = f"sqlite:///{work}/cds.db" if args.database == "sqlite" else create_database(name)
    try:
        report = asyncio.run(measure(args, work, url))
    finally:
        if args.database == "postgresql":
            drop_database(name)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
