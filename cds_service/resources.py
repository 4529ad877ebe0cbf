"""What the app's lifespan opens once and closes when it ends: I/O bound to the event loop.

The HTTP client to EHR FHIR servers (and SMART authorization servers), the slots that bound the
FHIR fetches in flight, the feedback store and the audit trail. Routes receive them through the
dependencies in `deps.py`; nothing opens them per request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from cds_service.audit.store import AuditStore
from cds_service.config import Settings
from cds_service.feedback.store import FeedbackStore
from cds_service.http11 import HTTP11Transport
from cds_service.prefetch.batch import BatchSupport
from cds_service.security.cookies import NoCookies
from cds_service.security.egress import EgressGuard, GuardedTransport, Resolver

__all__ = ["Resources", "open_resources"]


@dataclass(frozen=True, slots=True)
class Resources:
    """The open resources of one run of the app."""

    http: httpx.AsyncClient
    # FHIR fetches in flight at once (CDS_FHIR_MAX_CONNECTIONS): the rest wait here, not in
    # httpx's pool, whose bookkeeping grows with the requests queued in it.
    fetch_slots: asyncio.Semaphore
    feedback: FeedbackStore
    audit: AuditStore
    # Which EHR FHIR servers take batches (missing prefetch in one request), learned per server.
    batch: BatchSupport


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    fhir_transport: httpx.AsyncBaseTransport | None = None,
    resolver: Resolver | None = None,
    on_refusal: Callable[[str], None] = lambda reason: None,
) -> AsyncIterator[Resources]:
    """Open the resources, yield them, close them (what was opened, also when opening fails).

    The FHIR client sends through `HTTP11Transport` (`http11.py`: HTTP/1.1 with llhttp, pooled
    per name), which connects only where `EgressGuard` says (`security/egress.py`: the resolved
    address checked, each connection pinned to it; `on_refusal` counts refusals). Tests:
    `fhir_transport` replaces the network, and with `resolver` (a stub name → addresses) the
    guard runs over it; without one it is left out (the tests of everything else).
    """
    pool = settings.fhir_max_connections
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    transport: httpx.AsyncBaseTransport
    if fhir_transport is None:
        guard = EgressGuard(on_refusal=on_refusal)
        transport = HTTP11Transport(limits=limits, connect_address=guard.address)
    elif resolver is not None:
        given = fhir_transport
        transport = GuardedTransport(lambda: given, resolver=resolver, on_refusal=on_refusal)
    else:
        transport = fhir_transport
    async with contextlib.AsyncExitStack() as stack:
        http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(settings.prefetch_deadline_seconds),
            follow_redirects=False,
            limits=limits,
            cookies=NoCookies(),  # one client for every tenant: no server's cookie is kept
        )
        stack.push_async_callback(http.aclose)
        feedback = await FeedbackStore.open(
            settings.database_url, cache_seconds=settings.suppression_cache_seconds
        )
        stack.push_async_callback(feedback.close)
        audit = await AuditStore.open(settings.database_url)
        stack.push_async_callback(audit.close)
        batch = BatchSupport()
        stack.push_async_callback(batch.close)
        yield Resources(http, asyncio.Semaphore(pool), feedback, audit, batch)
