"""`/healthz` (the process answers) and `/readyz` (it can serve: services loaded, database up)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from cds_service.api.deps import StateDep

__all__ = ["router"]

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> Response:
    """Always `{"status": "ok"}` while the process can answer."""
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz", summary="Readiness")
async def readyz(state: StateDep) -> Response:
    """200 when ready; 503 with a `checks` object saying what is wrong otherwise."""
    checks = {
        "services": "ok" if len(state.registry) else "no services registered",
        "database": "ok" if state.feedback and await state.feedback.ping() else "unreachable",
    }
    if state.rules is not None:
        checks["rules"] = state.rules.problem or "ok"
    checks["auth"] = "required" if state.verifier is not None else "disabled (local trial only)"
    # Rule file errors are reported, not fatal: the good rules (or the last good set) serve.
    ready = all(v == "ok" for k, v in checks.items() if k not in ("rules", "auth"))
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return Response(
        orjson.dumps(body), status_code=200 if ready else 503, media_type="application/json"
    )
