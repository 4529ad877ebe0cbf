"""Discovery: `GET {baseUrl}/cds-services` (CDS Hooks 2.0 "Discovery")."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cds_service.wire.base import OutboundModel

__all__ = ["DiscoveryResponse", "ServiceDescriptor"]


class ServiceDescriptor(OutboundModel):
    """One entry of the discovery response: one service on one hook."""

    hook: str
    id: str
    title: str | None = None
    description: str
    prefetch: dict[str, str] | None = None
    usage_requirements: str | None = None
    extension: dict[str, Any] | None = None


class DiscoveryResponse(OutboundModel):
    """`{"services": [...]}`; an empty registry answers `{"services": []}`."""

    services: list[ServiceDescriptor] = Field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        return {"services": [service.wire() for service in self.services]}
