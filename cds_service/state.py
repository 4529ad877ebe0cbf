"""What the running app holds: settings, registry, rules, HTTP client, feedback store, clock.

Created in `create_app`'s lifespan and reached by routes through `api/deps.py`; nothing lives at
module level.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from cds_service.audit.store import AuditStore
from cds_service.config import Settings
from cds_service.feedback.store import FeedbackStore
from cds_service.metrics import Metrics
from cds_service.rules.runtime import RuleRuntime
from cds_service.scores.cache import ScoreCache
from cds_service.security.jwt_auth import JwtVerifier
from cds_service.security.ratelimit import RateLimiter
from cds_service.security.tenants import TenantRegistry
from cds_service.services.registry import ServiceRegistry
from cds_service.smart.sessions import SmartRuntime
from cds_service.types import Clock

__all__ = ["AppState", "Clock"]


@dataclass(slots=True)
class AppState:
    """The long-lived collaborators of one app instance."""

    settings: Settings
    registry: ServiceRegistry
    clock: Clock
    http: httpx.AsyncClient | None = None
    # FHIR fetches in flight at once (CDS_FHIR_MAX_CONNECTIONS): the rest wait here, not in
    # httpx's pool, whose bookkeeping grows with the requests queued in it.
    fetch_slots: asyncio.Semaphore | None = None
    feedback: FeedbackStore | None = None
    audit: AuditStore | None = None
    rules: RuleRuntime | None = None
    score_cache: ScoreCache | None = None
    verifier: JwtVerifier | None = None  # None when CDS_AUTH=disabled
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)
    tenants: TenantRegistry | None = None
    smart: SmartRuntime | None = None
    metrics: Metrics | None = None
    auth_refusals: dict[str, int] = field(default_factory=dict)
