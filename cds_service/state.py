"""What one app holds from `create_app` on: settings, services, clock, metrics, auth.

`create_app` builds it and puts it on `app.state.cds`; routes reach its parts through the
dependencies in `deps.py` (what the lifespan opens is in `resources.py`). Nothing lives at module
level. Two collaborators may be absent, and None then says why: `rules` when `create_app` was
given the services (tests), `verifier` when CDS_AUTH=disabled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cds_service.config import Settings
from cds_service.metrics import Metrics
from cds_service.rules.runtime import RuleRuntime
from cds_service.scores.cache import ScoreCache
from cds_service.security.jwt_auth import JwtVerifier
from cds_service.security.ratelimit import RateLimiter
from cds_service.security.tenants import TenantRegistry
from cds_service.services.registry import ServiceRegistry
from cds_service.types import Clock

__all__ = ["AppState"]


@dataclass(slots=True)
class AppState:
    """The long-lived collaborators of one app instance."""

    settings: Settings
    registry: ServiceRegistry  # replaced when the rules directory changes
    clock: Clock
    score_cache: ScoreCache
    metrics: Metrics
    tenants: TenantRegistry  # empty without CDS_TENANTS_FILE
    rules: RuleRuntime | None  # None when the services were given to create_app
    verifier: JwtVerifier | None  # None when CDS_AUTH=disabled
    # JWT refusals by reason: counted by the authentication dependency, read by the metrics.
    auth_refusals: dict[str, int] = field(default_factory=dict)
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)
