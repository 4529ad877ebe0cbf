"""`GET /cds-services`: the discovery endpoint."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from cds_service.api.audit import audited
from cds_service.api.auth import Caller
from cds_service.api.deps import AuditDep, MetricsDep, RegistryDep
from cds_service.deps import ClockDep, SettingsDep
from cds_service.wire.discovery import DiscoveryResponse

__all__ = ["router"]

router = APIRouter()


@router.get("/cds-services", summary="Discover the CDS services offered", tags=["CDS Hooks"])
async def discovery(
    settings: SettingsDep,
    registry: RegistryDep,
    audit: AuditDep,
    metrics: MetricsDep,
    clock: ClockDep,
    caller: Caller,
) -> Response:
    """One entry per service and hook; `{"services": []}` when none are registered."""
    # Audited too: who learns which services we offer matters as much as who calls them.
    async with audited(audit, metrics, clock, "discovery", caller):
        per_hook = settings.discovery_ids == "per-hook"
        body = DiscoveryResponse(services=registry.descriptors(per_hook_ids=per_hook)).wire()
    return Response(orjson.dumps(body), media_type="application/json")
