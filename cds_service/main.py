"""The app factory: `create_app(settings)` wires settings, services, routes and resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from cds_service import __version__
from cds_service.api import discovery, feedback, health, hooks
from cds_service.api.errors import install_error_handlers
from cds_service.clock import system_clock
from cds_service.config import Settings, load_settings
from cds_service.heap import settle_heap
from cds_service.logs import RequestIdMiddleware
from cds_service.metrics import Metrics
from cds_service.openapi import install_openapi
from cds_service.resources import open_resources
from cds_service.rules.runtime import RuleRuntime
from cds_service.scores.cache import ScoreCache
from cds_service.scores.provider import ScoreProvider
from cds_service.scores.sources import CachedScores
from cds_service.security.cookies import NoCookies
from cds_service.security.egress import Resolver
from cds_service.security.headers import SecurityHeadersMiddleware
from cds_service.security.jwks import KeyStore
from cds_service.security.jwt_auth import JwtVerifier
from cds_service.security.ratelimit import RateLimiter, SharedRateLimiter
from cds_service.security.replay import ReplayCache
from cds_service.security.smart_discovery import SmartDiscovery
from cds_service.security.tenants import TenantRegistry, tenants_for
from cds_service.services.builtin import builtin_services
from cds_service.services.definition import ServiceDefinition
from cds_service.services.plugin_services import plugin_services
from cds_service.services.registry import ServiceRegistry
from cds_service.smart import routes as smart_routes
from cds_service.smart.sessions import SessionStore, SmartRuntime
from cds_service.state import AppState
from cds_service.tracing import configure_tracing
from cds_service.types import Clock
from cds_service.workbench import routes as workbench_routes
from cds_service.workbench.auth import install_workbench_auth
from cds_service.workbench.runtime import WorkbenchRuntime

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger(__name__)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: Settings,
    *,
    services: Iterable[ServiceDefinition] | None = None,
    fhir_transport: httpx.AsyncBaseTransport | None = None,
    fhir_resolver: Resolver | None = None,
    jwks_transport: httpx.AsyncBaseTransport | None = None,
    oidc_transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = system_clock,
    auth_clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the ASGI app.

    By default the services come from the rules directory (reloaded on change) plus the
    built-in services; `services` replaces all of them (tests);
    `fhir_transport` replaces the network for calls to EHR FHIR servers (tests use
    `httpx.MockTransport`) and `fhir_resolver` the name resolution the SSRF guard checks (with
    one, the guard runs over the given transport), `jwks_transport` the network for tenants'
    key sets, `oidc_transport` the network for the workbench's OpenID Connect provider;
    `clock` replaces the wall clock, `auth_clock` the one JWTs are checked against.
    """
    tenants = tenants_for(settings)
    score_cache = ScoreCache(
        redis_url=settings.redis_url,
        ttl_seconds=settings.score_cache_ttl_seconds,
        enabled=settings.score_cache_enabled,
    )
    runtime: RuleRuntime | None = None
    if services is None:
        runtime = RuleRuntime(
            settings.rules_dir,
            extra_services=(
                (lambda: builtin_services() + plugin_services())
                if settings.builtin_services
                else plugin_services
            ),
            budget_seconds=settings.rule_budget_seconds,
            scores=CachedScores(ScoreProvider(score_cache, clock=clock)),
        )
        registry = runtime.load()
        assert registry is not None  # the first load always yields a registry or raises
    else:
        registry = ServiceRegistry(services)
    jwks_client = httpx.AsyncClient(
        transport=jwks_transport,
        timeout=httpx.Timeout(2.0),
        follow_redirects=False,
        cookies=NoCookies(),
    )
    replay = ReplayCache(settings.redis_url)
    limiter = SharedRateLimiter(settings.redis_url) if settings.redis_url else RateLimiter()
    configure_tracing(settings.tracing)
    verifier = None
    if tenants is not None and settings.auth == "required":
        verifier = JwtVerifier(
            tenants,
            KeyStore(jwks_client),
            replay,
            skew_seconds=settings.jwt_clock_skew_seconds,
            max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
            clock=auth_clock,
        )
    refusals: dict[str, int] = {}
    state = AppState(
        settings=settings,
        registry=registry,
        clock=clock,
        score_cache=score_cache,
        metrics=Metrics(
            rules=runtime.stats if runtime is not None else None,
            score_cache=score_cache.stats,
            refusals=refusals,
        ),
        tenants=tenants if tenants is not None else TenantRegistry([]),
        rules=runtime,
        verifier=verifier,
        auth_refusals=refusals,
        rate_limiter=limiter,
    )
    sessions = SessionStore(settings.redis_url, idle_seconds=settings.smart_session_idle_seconds)
    workbench = WorkbenchRuntime(settings)

    def swap(new: ServiceRegistry) -> None:
        state.registry = new

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Open the resources once, start watching the rules; close everything at the end."""
        async with contextlib.AsyncExitStack() as stack:
            closers = (jwks_client.aclose, sessions.close, replay.close, score_cache.close)
            for close in (*closers, limiter.close, workbench.close):
                stack.push_async_callback(close)
            resources = await stack.enter_async_context(
                open_resources(
                    settings,
                    fhir_transport=fhir_transport,
                    resolver=fhir_resolver,
                    on_refusal=lambda reason: state.metrics.fetch_refusals.labels(reason).inc(),
                )
            )
            app.state.resources = resources
            app.state.smart = SmartRuntime(sessions, SmartDiscovery(resources.http))
            if runtime is not None and settings.rules_reload_seconds > 0:
                watcher = asyncio.create_task(runtime.watch(settings.rules_reload_seconds, swap))
                stack.push_async_callback(_stop, watcher)
            if verifier is None:
                log.warning(
                    "CDS_AUTH=disabled: any caller is accepted without a JWT; "
                    "for a local trial only, never with patient data"
                )
            if settings.gc_threshold:
                settle_heap(settings.gc_threshold)
            log.info("cds-service %s ready: %d services", __version__, len(state.registry))
            yield

    app = FastAPI(
        title="cds-service",
        version=__version__,
        description="A CDS Hooks 2.0 decision-support service.",
        lifespan=lifespan,
        docs_url="/docs" if settings.env == "development" else None,
        redoc_url=None,
    )
    app.state.cds = state
    app.state.workbench = workbench
    install_error_handlers(app)
    for module in (discovery, hooks, feedback, health, smart_routes, workbench_routes):
        app.include_router(module.router)
    install_workbench_auth(app, settings, transport=oidc_transport)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.env == "production")
    app.add_middleware(RequestIdMiddleware)
    install_openapi(app)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn's `--factory` mode: settings from `CDS_*` variables."""
    return create_app(load_settings())
