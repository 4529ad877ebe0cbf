"""The app factory: `create_app(settings)` wires settings, services, routes and resources."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from cds_service import __version__
from cds_service.api import discovery, feedback, health, hooks
from cds_service.api.errors import install_error_handlers
from cds_service.config import Settings, load_settings
from cds_service.feedback.store import FeedbackStore
from cds_service.openapi import install_openapi
from cds_service.services.builtin import builtin_services
from cds_service.services.definition import ServiceDefinition
from cds_service.services.registry import ServiceRegistry
from cds_service.state import AppState, Clock

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    *,
    services: Iterable[ServiceDefinition] | None = None,
    fhir_transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = _utc_now,
) -> FastAPI:
    """Build the ASGI app.

    `services` replaces the built-in services (tests, and the rule engine later);
    `fhir_transport` replaces the network for calls to EHR FHIR servers (tests use
    `httpx.MockTransport`); `clock` replaces the wall clock.
    """
    registry = ServiceRegistry(builtin_services() if services is None else services)
    state = AppState(settings=settings, registry=registry, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.prefetch_deadline_seconds)
        state.http = httpx.AsyncClient(
            transport=fhir_transport, timeout=timeout, follow_redirects=False
        )
        state.feedback = await FeedbackStore.open(settings.database_url)
        log.info("cds-service %s ready: %d services", __version__, len(registry))
        try:
            yield
        finally:
            await state.http.aclose()
            await state.feedback.close()

    app = FastAPI(
        title="cds-service",
        version=__version__,
        description="A CDS Hooks 2.0 decision-support service.",
        lifespan=lifespan,
        docs_url="/docs" if settings.env == "development" else None,
        redoc_url=None,
    )
    app.state.cds = state
    install_error_handlers(app)
    for module in (discovery, hooks, feedback, health):
        app.include_router(module.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
            max_age=600,
        )
    install_openapi(app)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn's `--factory` mode: settings from `CDS_*` variables."""
    return create_app(load_settings())
