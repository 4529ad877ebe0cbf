"""`POST /cds-services/{id}`: call a CDS service on a hook."""

from __future__ import annotations

import logging
import time

import orjson
from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from cds_service.api.audit import AuditRecord, audited
from cds_service.api.auth import Caller
from cds_service.api.body import parse_body
from cds_service.deps import ResourcesDep, StateDep
from cds_service.exceptions import Issue, RequestError, ServiceNotFound
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.resources import Resources
from cds_service.security.jwt_auth import Principal
from cds_service.security.ssrf import fetch_refusal
from cds_service.services.definition import HookCall
from cds_service.services.registry import Endpoint, ServiceRegistry
from cds_service.state import AppState
from cds_service.tracing import tracer
from cds_service.urls import public_base
from cds_service.wire.contexts import hook_spec
from cds_service.wire.outcome import issues_from_validation
from cds_service.wire.request import HookRequest
from cds_service.wire.response import CDSResponse

__all__ = ["find_service", "router"]

log = logging.getLogger(__name__)
router = APIRouter()


def find_service(registry: ServiceRegistry, service_id: str) -> Endpoint:
    """The registered service (by its id or a per-hook id), or 404."""
    endpoint = registry.endpoint(service_id)
    if endpoint is None:
        raise ServiceNotFound(f"no CDS service with id '{service_id}'")
    return endpoint


@router.post("/cds-services/{service_id}", summary="Call a CDS service", tags=["CDS Hooks"])
async def call_service(
    service_id: str, request: Request, state: StateDep, resources: ResourcesDep, caller: Caller
) -> Response:
    """Validate the call, resolve prefetch, evaluate the service and return its cards.

    One budget (CDS_HOOK_BUDGET_SECONDS) covers the call: fetching missing prefetch may use all
    but the last quarter of it (and at most CDS_PREFETCH_DEADLINE_SECONDS); the rules get the rest.
    """
    endpoint = find_service(state.registry, service_id)
    with tracer().start_as_current_span("cds.hook") as span:
        span.set_attribute("cds.service", endpoint.service.id)
        span.set_attribute("cds.tenant", caller.tenant_id)
        async with audited(
            resources.audit, state.metrics, "hook", caller, endpoint.service.id
        ) as record:
            try:
                return await _call(endpoint, service_id, request, state, resources, caller, record)
            finally:
                span.set_attribute("cds.hook", record.hook or "")
                span.set_attribute("cds.hook_instance", record.hook_instance or "")
                span.set_attribute("cds.cards", record.cards)


async def _call(
    endpoint: Endpoint,
    service_id: str,
    request: Request,
    state: AppState,
    resources: Resources,
    caller: Principal,
    record: AuditRecord,
) -> Response:
    started = record.started
    settings = state.settings
    service = endpoint.service
    call = await parse_body(request, settings, HookRequest, "hook request")
    record.hook, record.hook_instance = call.hook, str(call.hook_instance)
    patient, user = call.context.get("patientId"), call.context.get("userId")
    record.patient_id = patient if isinstance(patient, str) else None
    record.user_id = user if isinstance(user, str) else None
    spec = hook_spec(call.hook)
    if spec is None:
        message = (
            f"hook: '{call.hook}' is neither a hook of the HL7 hook library "
            "nor a reverse-domain hook such as 'org.example.my-hook'"
        )
        raise _unsupported(message)
    if endpoint.hook is not None and call.hook != endpoint.hook:
        message = f"hook: '{service_id}' serves '{endpoint.hook}' only, not '{call.hook}'"
        raise _unsupported(message)
    if call.hook not in service.hooks:
        served = ", ".join(service.hooks)
        message = f"hook: service '{service.id}' does not serve '{call.hook}' (it serves {served})"
        raise _unsupported(message)
    try:
        context = spec.context.model_validate(call.context)
    except ValidationError as exc:
        issues = issues_from_validation(exc, prefix="context")
        raise RequestError("invalid context", issues=issues) from None
    budget = settings.hook_budget_seconds
    fetch_window = min(settings.prefetch_deadline_seconds, budget * 0.75)
    fetch_window = max(fetch_window - (time.perf_counter() - started), 0.01)
    specs = service.prefetch_for(call.hook)
    if service.skip_fetching is not None:
        sent = call.prefetch or {}
        skip = await service.skip_fetching(call, call.hook, caller.tenant_id)
        specs = {k: v for k, v in specs.items() if k in sent or k not in skip}
    refused = fetch_refusal(call.fhir_server, caller, production=settings.env == "production")
    if refused is not None:
        log.warning("not fetching prefetch for tenant %s: %s", caller.tenant_id, refused)
    fetch_started = time.perf_counter()
    with tracer().start_as_current_span("cds.prefetch") as span:
        prefetch = await resolve_prefetch(
            call,
            specs,
            resources.http,
            deadline_seconds=fetch_window,
            max_pages=settings.prefetch_max_pages,
            fetch_refused=refused,
            slots=resources.fetch_slots,
        )
        span.set_attribute("cds.prefetch.keys", len(specs))
        span.set_attribute(
            "cds.prefetch.fetched", sum(1 for o in prefetch.values() if o.source == "fetched")
        )
    state.metrics.prefetch_seconds.observe(time.perf_counter() - fetch_started)
    for outcome in prefetch.values():
        state.metrics.prefetch_keys.labels(outcome.source).inc()
    base_url = public_base(request, settings.public_base_url)
    hook_call = HookCall(
        call,
        context,
        prefetch,
        state.clock(),
        base_url,
        deadline=started + budget,
        tenant=caller.tenant_id,
    )
    result = await service.evaluate(hook_call)
    record.cards = len(result.cards)
    response = CDSResponse(cards=result.cards, system_actions=result.system_actions or None)
    return Response(orjson.dumps(response.wire()), media_type="application/json")


def _unsupported(message: str) -> RequestError:
    """A 400 naming the `hook` field as not supported."""
    return RequestError(message, issues=[Issue(message, "hook", "not-supported")])
