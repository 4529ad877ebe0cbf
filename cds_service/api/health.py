"""`/healthz` (the process answers), `/readyz` (it can serve: services, database, Redis) and
`/metrics` (Prometheus)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from cds_service.api.deps import FeedbackDep, MetricsDep
from cds_service.deps import StateDep

__all__ = ["router"]

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> Response:
    """Always `{"status": "ok"}` while the process can answer."""
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(metrics: MetricsDep) -> Response:
    """Counters and histograms in the Prometheus text format (no patient data, only counts)."""
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/readyz", summary="Readiness")
async def readyz(state: StateDep, feedback: FeedbackDep) -> Response:
    """200 when ready; 503 with a `checks` object saying what is wrong otherwise."""
    checks = {
        "services": "ok" if len(state.registry) else "no services registered",
        "database": "ok" if await feedback.ping() else "unreachable",
    }
    if state.rules is not None:
        checks["rules"] = state.rules.problem or "ok"
    if state.score_cache.shared:
        checks["redis"] = "ok" if await state.score_cache.ping() else "unreachable"
    checks["auth"] = "required" if state.verifier is not None else "disabled (local trial only)"
    # "ok" when counted in Redis across replicas; otherwise which process counts them.
    checks["rate_limits"] = state.rate_limiter.state
    # Rule file errors are reported, not fatal: the good rules (or the last good set) serve.
    # Rate limits counted per process still limit (and Redis has its own check).
    informational = ("rules", "auth", "rate_limits")
    ready = all(v == "ok" for k, v in checks.items() if k not in informational)
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return Response(
        orjson.dumps(body), status_code=200 if ready else 503, media_type="application/json"
    )
