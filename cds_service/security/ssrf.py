"""Where the service may fetch missing prefetch from: only a tenant's own FHIR servers.

A request's `fhirServer` is attacker-controlled input; fetching from it blindly would let any
caller make us send requests (with tokens) anywhere. So the service fetches only from the
`fhir_servers` listed for the calling tenant, and only over https in production. With
authentication disabled (local trial) there is no tenant: fetching is allowed in development only.
Anything refused is treated as unobtainable data (412 when a service requires it).
"""

from __future__ import annotations

from cds_service.security.jwt_auth import Principal

__all__ = ["fetch_refusal"]


def fetch_refusal(fhir_server: str | None, principal: Principal, *, production: bool) -> str | None:
    """Why the service must not fetch from `fhir_server` for this caller, or None if it may."""
    if fhir_server is None:
        return None
    base = fhir_server.rstrip("/")
    if production and not base.startswith("https://"):
        return "fhirServer is not https"
    if principal.tenant is None:
        return (
            "no tenant to allow-list fhirServer (authentication disabled)" if production else None
        )
    if base not in principal.tenant.fhir_servers:
        return "fhirServer is not one of the tenant's fhir_servers"
    return None
