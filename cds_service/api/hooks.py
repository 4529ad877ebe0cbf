"""`POST /cds-services/{id}`: call a CDS service on a hook."""

from __future__ import annotations

import logging
from collections import Counter

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from cds_service import __version__, tracing
from cds_service.api.audit import AuditRecord, audited
from cds_service.api.auth import authenticate
from cds_service.api.body import parse_body
from cds_service.deps import app_resources, app_state
from cds_service.exceptions import Issue, RequestError, ServiceNotFound
from cds_service.feedback.overrides import StoredOverrides
from cds_service.resources import Resources
from cds_service.rules.pipeline import FhirSource, evaluate_call
from cds_service.security.jwt_auth import Principal
from cds_service.security.ssrf import fetch_refusal
from cds_service.services.definition import CardOrigin
from cds_service.services.registry import Endpoint, ServiceRegistry
from cds_service.state import AppState
from cds_service.urls import public_base
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
async def call_service(service_id: str, request: Request) -> Response:
    """Validate the call, resolve prefetch, evaluate the service and return its cards.

    One budget (CDS_HOOK_BUDGET_SECONDS) covers the call: fetching missing prefetch may use all
    but the last quarter of it (and at most CDS_PREFETCH_DEADLINE_SECONDS); the rules get the rest.
    """
    # The caller, the state and the resources are not FastAPI dependencies: FastAPI resolves
    # each dependency on every call, and this route takes every hook. The caller is verified
    # first, as a dependency would have been (an unknown service answers 401 before 404).
    caller = await authenticate(request)
    state, resources = app_state(request), app_resources(request)
    endpoint = find_service(state.registry, service_id)
    with tracing.span("cds.hook") as span:
        span.set_attribute("cds.service", endpoint.service.id)
        span.set_attribute("cds.tenant", caller.tenant_id)
        async with audited(
            resources.audit, state.metrics, state.clock, "hook", caller, endpoint.service.id
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
    settings = state.settings
    call = await parse_body(request, settings, HookRequest, "hook request")
    record.hook, record.hook_instance = call.hook, str(call.hook_instance)
    patient, user = call.context.get("patientId"), call.context.get("userId")
    record.patient_id = patient if isinstance(patient, str) else None
    record.user_id = user if isinstance(user, str) else None
    if endpoint.hook is not None and call.hook != endpoint.hook:
        message = f"hook: '{service_id}' serves '{endpoint.hook}' only, not '{call.hook}'"
        raise RequestError(message, issues=[Issue(message, "hook", "not-supported")])
    refused = fetch_refusal(call.fhir_server, caller, production=settings.env == "production")

    def refusing(why: str) -> None:  # called only when a key had to be fetched
        log.warning("not fetching prefetch for tenant %s: %s", caller.tenant_id, why)
        state.metrics.fetch_refusals.labels(why).inc()

    source = FhirSource(
        resources.http,
        settings.prefetch_max_pages,
        resources.fetch_slots,
        refused,
        resources.batch,
        on_refusal=refusing,
        max_depth=settings.max_json_depth,
    )
    result = await evaluate_call(
        endpoint.service,
        call,
        source,
        now=state.clock(),
        budget_seconds=settings.hook_budget_seconds,
        prefetch_deadline_seconds=settings.prefetch_deadline_seconds,
        base_url=public_base(request, settings.public_base_url),
        tenant=caller.tenant_id,
        started=record.started,
        # Snoozes from the calling tenant's overrides (None: without authentication, as stored).
        suppression=StoredOverrides(
            resources.feedback, caller.tenant.id if caller.tenant is not None else None
        ),
    )
    state.metrics.prefetch_seconds.observe(result.fetch_seconds)
    # One labelled increment per source, not one per key.
    for source_name, keys in Counter(o.source for o in result.prefetch.values()).items():
        state.metrics.prefetch_keys.labels(source_name).inc(keys)
    cards = result.result.cards
    actions = result.result.system_actions or None
    body = orjson.dumps(CDSResponse(cards=cards, system_actions=actions).wire())
    # Recorded as issued with the audit row, before the answer leaves: feedback on a card is
    # feedback on its rule. A built-in service's cards are its own (its id, the package version).
    own = CardOrigin(endpoint.service.id, __version__)
    record.issued = {card.uuid: result.result.origins.get(card.uuid, own) for card in cards}
    record.cards = len(cards)
    record.rule_outcomes = result.result.rule_statuses
    return Response(body, media_type="application/json")
