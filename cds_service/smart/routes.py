"""The SMART routes: `/smart/launch`, `/smart/callback`, `/smart/app`, `/smart/logout`.

EHR launch: `launch?iss=…&launch=…`; standalone launch: `launch?iss=…`, or `launch` alone for a
chooser of the configured EHRs. `iss` must be one of a tenant's `fhir_servers`; authorization is
the code flow with PKCE S256, a `state` bound to the browser's session and used once, `aud` =
`iss`. Every failure is a readable page with a way back, never a redirect to an unknown place.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cds_service.api.body import read_small_form
from cds_service.audit.store import AuditEntry
from cds_service.config import Settings
from cds_service.deps import ClockDep, HttpDep, ResourcesDep, RulesDep, SettingsDep, TenantsDep
from cds_service.rules.runtime import RuleRuntime
from cds_service.scores import SCORES, score_from_fhir
from cds_service.security.smart_discovery import SmartConfiguration, SmartError
from cds_service.security.tenants import SmartClient, Tenant, TenantRegistry
from cds_service.smart import oauth
from cds_service.smart.chart import OUTCOMES, can_create, risk_assessment, write_risk_assessment
from cds_service.smart.data import TokenProvider, build_view, fetch_patient_data
from cds_service.smart.deps import SmartDep
from cds_service.smart.pkce import challenge, new_state, new_verifier
from cds_service.smart.presentation import category
from cds_service.smart.sessions import SmartRuntime
from cds_service.smart.style import allowed_style_url
from cds_service.smart.view import render_app, render_chooser, render_error
from cds_service.types import Clock
from cds_service.urls import public_base

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/smart", include_in_schema=False)
COOKIE = "cds_smart_session"
WRITE_SCOPE = "patient/RiskAssessment.c"  # written .write for a SMART v1 server


def _base(request: Request, settings: Settings) -> str:
    return public_base(request, settings.public_base_url)


def _launch_url(request: Request, settings: Settings, iss: str) -> str:
    """Our launch endpoint for this FHIR server (to start again or choose a server)."""
    return f"{_base(request, settings)}/smart/launch?{urlencode({'iss': iss})}"


def _headers(tenant: Tenant | None) -> dict[str, str]:
    ancestors = " ".join(tenant.smart.frame_ancestors) if tenant and tenant.smart else ""
    return {
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; base-uri 'none'; "
            f"frame-ancestors {ancestors or 'none'}"
        ),
        "Cache-Control": "no-store",
    }


def _page(html: str, status: int = 200, tenant: Tenant | None = None) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers=_headers(tenant))


def _error(
    request: Request,
    settings: Settings,
    error: SmartError,
    iss: str | None = None,
    tenant: Tenant | None = None,
) -> HTMLResponse:
    relaunch = _launch_url(request, settings, iss) if iss else None
    log.warning("SMART launch failed: %s", error.message)
    html = render_error(
        title="The app could not open",
        message=error.message,
        relaunch_url=relaunch,
        status=error.status,
    )
    return _page(html, error.status, tenant)


def _set_cookie(response: Response, request: Request, settings: Settings, session_id: str) -> None:
    secure = _base(request, settings).startswith("https://")
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        secure=secure,
        samesite=settings.smart_cookie_samesite,
        path="/smart",
        max_age=settings.smart_session_idle_seconds,
    )


def _tenant_for(tenants: TenantRegistry, iss: str) -> Tenant:
    tenant = tenants.for_fhir_server(iss)
    if tenant is None or tenant.smart is None:
        raise SmartError("this EHR (iss) is not one we are registered with", status=400)
    return tenant


@router.get("/launch")
async def launch(
    request: Request,
    settings: SettingsDep,
    tenants: TenantsDep,
    smart: SmartDep,
    clock: ClockDep,
    iss: str | None = None,
    launch: str | None = None,
) -> Response:
    """Start an EHR or standalone launch: discover, then send the browser to authorize."""
    if not iss:
        options = [
            (
                f"{t.id} ({server})",
                _launch_url(request, settings, server),
            )
            for t in tenants.tenants.values()
            if t.smart is not None
            for server in t.fhir_servers
        ]
        return _page(render_chooser(options))
    iss = iss.rstrip("/")
    try:
        tenant = _tenant_for(tenants, iss)
        assert tenant.smart is not None
        config = await smart.discovery.get(iss)
        if config.code_challenge_methods and "S256" not in config.code_challenge_methods:
            raise SmartError("the EHR does not support PKCE with S256", status=502)
        authorization_endpoint = config.authorization_endpoint
        if authorization_endpoint is None:
            raise SmartError(
                "the EHR's SMART configuration has no authorization endpoint", status=502
            )
    except SmartError as error:
        return _error(request, settings, error, None)
    scopes = tenant.smart.scopes.split()
    if tenant.smart.write_back and WRITE_SCOPE not in scopes:
        scopes.append(WRITE_SCOPE)
    if launch is None:  # standalone: the user picks the patient at the EHR
        scopes = [s for s in scopes if s != "launch"] + ["launch/patient"]
    elif "launch" not in scopes:
        scopes.append("launch")
    scope = oauth.adapt_scopes(" ".join(scopes), config.scopes_v2)
    verifier, state_value = new_verifier(), new_state()
    session_id = smart.sessions.new_id()
    await smart.sessions.put(
        session_id,
        {
            "stage": "authorizing",
            "state": state_value,
            "verifier": verifier,
            "iss": iss,
            "tenant": tenant.id,
            "launch": launch,
            "scope": scope,
            "started": clock().timestamp(),
        },
    )
    url = oauth.authorize_url(
        authorization_endpoint,
        tenant.smart,
        redirect_uri=f"{_base(request, settings)}/smart/callback",
        scope=scope,
        state=state_value,
        code_challenge=challenge(verifier),
        aud=iss,
        launch=launch,
    )
    response = RedirectResponse(url, status_code=302, headers=_headers(tenant))
    _set_cookie(response, request, settings, session_id)
    return response


@router.get("/callback")
async def callback(
    request: Request,
    settings: SettingsDep,
    tenants: TenantsDep,
    smart: SmartDep,
    http: HttpDep,
    clock: ClockDep,
) -> Response:
    """Back from the authorization server: check state, trade the code, start the session."""
    params = request.query_params
    session_id = request.cookies.get(COOKIE)
    session = await smart.sessions.get(session_id)
    if session is None or session.get("stage") != "authorizing":
        return _error(
            request,
            settings,
            SmartError(
                "this sign-in is no longer valid (expired, already used, or started in another "
                "browser); open the app again from the EHR",
                status=400,
            ),
        )
    iss = session["iss"]
    sent_state = params.get("state", "")
    if not hmac.compare_digest(sent_state.encode(), str(session["state"]).encode()):
        await smart.sessions.delete(session_id)
        return _error(request, settings, SmartError("the sign-in state does not match"), iss)
    await smart.sessions.delete(session_id)  # state is single-use
    try:
        tenant = _tenant_for(tenants, iss)
        assert tenant.smart is not None
        if "error" in params:
            raise SmartError(f"the EHR refused the authorization ({params['error']})")
        code = params.get("code")
        if not code:
            raise SmartError("the EHR sent no authorization code")
        config = await smart.discovery.get(iss)
        tokens = await oauth.exchange_code(
            http,
            config,
            tenant.smart,
            code=code,
            redirect_uri=f"{_base(request, settings)}/smart/callback",
            verifier=session["verifier"],
        )
        fhir_user = None
        if "openid" in session["scope"].split() and "id_token" in tokens:
            claims = await _verified_id_token(
                http, config, tenant, tokens["id_token"], clock().timestamp()
            )
            fhir_user = claims.get("fhirUser")
    except SmartError as error:
        return _error(request, settings, error, iss, None)
    ready = {
        "stage": "ready",
        "iss": iss,
        "tenant": tenant.id,
        "access_token": tokens["access_token"],
        "refresh_token": tokens.get("refresh_token"),
        "expires_at": clock().timestamp() + float(tokens.get("expires_in", 300)),
        "patient": tokens.get("patient"),
        "encounter": tokens.get("encounter"),
        "need_patient_banner": tokens.get("need_patient_banner", True) is not False,
        "smart_style_url": tokens.get("smart_style_url"),
        "app_context": tokens.get("appContext"),
        "fhir_context": tokens.get("fhirContext"),
        "fhir_user": fhir_user,
        "scope": tokens.get("scope"),
        "csrf": secrets.token_urlsafe(24),  # for the view's forms (save to chart)
    }
    new_id = smart.sessions.new_id()  # a fresh id once signed in (no session fixation)
    await smart.sessions.put(new_id, ready)
    response = RedirectResponse(
        f"{_base(request, settings)}/smart/app", status_code=303, headers=_headers(tenant)
    )
    _set_cookie(response, request, settings, new_id)
    return response


async def _verified_id_token(
    http: httpx.AsyncClient,
    config: SmartConfiguration,
    tenant: Tenant,
    id_token: str,
    now: float,
) -> dict[str, Any]:
    assert tenant.smart is not None
    if config.jwks_uri is None:
        raise SmartError("the EHR sent an id_token but publishes no keys to check it")
    try:
        response = await http.get(config.jwks_uri)
        jwks = response.json()
    except (httpx.HTTPError, ValueError):
        raise SmartError("the EHR's keys could not be read to check the id_token") from None
    return oauth.verify_id_token(id_token, config, tenant.smart, jwks, now=now)


async def _no_style() -> str:
    return ""


@dataclass(frozen=True, slots=True)
class CardContext:
    """What the card's `appContext` names: the card as text, the score it was about (the first
    score its rule reads) and what the card suggests (its suggestions' fixed labels)."""

    text: str | None = None
    focus: str | None = None
    suggestions: tuple[str, ...] = ()


def _context(rules: RuleRuntime | None, app_context: Any) -> CardContext:
    if not isinstance(app_context, str):
        return CardContext()
    try:
        parsed = json.loads(app_context)
    except ValueError:
        return CardContext()
    rule_id = parsed.get("rule") if isinstance(parsed, dict) else None
    ruleset = rules.ruleset if rules is not None else None
    if isinstance(rule_id, str) and ruleset is not None and rule_id in ruleset.rules:
        rule = ruleset.rules[rule_id].rule
        labels = tuple(
            s.label
            for s in rule.card.suggestions or ()
            if "{{" not in s.label  # fixed text only
        )
        return CardContext(
            f"the card “{rule.title}”", rule.scores[0] if rule.scores else None, labels
        )
    return CardContext()


@router.get("/app")
async def app_view(
    request: Request,
    settings: SettingsDep,
    tenants: TenantsDep,
    smart: SmartDep,
    http: HttpDep,
    clock: ClockDep,
    rules: RulesDep,
) -> Response:
    """The clinician view for the session's patient."""
    session_id = request.cookies.get(COOKIE)
    session = await smart.sessions.get(session_id)
    if session is None or session.get("stage") != "ready":
        return _error(
            request,
            settings,
            SmartError(
                "your session has ended (it lasts 15 minutes without use); open the app again from "
                "the EHR",
                status=401,
            ),
        )
    iss = session["iss"]
    try:
        tenant = _tenant_for(tenants, iss)
        assert tenant.smart is not None
        if not session.get("patient"):
            raise SmartError("the EHR did not say which patient to show")
        config = await smart.discovery.get(iss)
    except SmartError as error:
        return _error(request, settings, error, iss)
    smart_client = tenant.smart
    token = _session_token(smart, http, config, smart_client, clock, str(session_id), session)

    style_url = session.get("smart_style_url")
    refusal = allowed_style_url(
        style_url,
        iss=iss,
        fhir_servers=list(tenant.fhir_servers),
        development=settings.env == "development",
    )
    if refusal is not None and style_url:
        log.warning("smart style not fetched: %s", refusal)
    try:
        data, style_css = await asyncio.gather(
            fetch_patient_data(
                http,
                iss,
                str(session["patient"]),
                token,
                encounter_id=session.get("encounter"),
                max_depth=settings.max_json_depth,
            ),
            smart.styles.css(http, str(style_url)) if refusal is None else _no_style(),
        )
    except SmartError as error:
        return _error(request, settings, error, iss, tenant)
    base = _base(request, settings)
    card = _context(rules, session.get("app_context"))
    notice = session.pop("notice", None)
    if notice is not None:
        await smart.sessions.put(str(session_id), session)
    offer_save = bool(smart_client.write_back and can_create(session.get("scope")))
    view = build_view(
        data,
        now=clock(),
        need_banner=bool(session.get("need_patient_banner", True)),
        context=card.text,
        focus=card.focus,
        suggestions=card.suggestions,
        style_url=style_url,
        style_css=style_css,
        save_action=f"{base}/smart/save" if offer_save else None,
        csrf=str(session.get("csrf", "")),
        notice=(bool(notice["ok"]), str(notice["text"])) if isinstance(notice, dict) else None,
        logout_url=f"{base}/smart/logout",
        relaunch_url=_launch_url(request, settings, iss),
    )
    return _page(render_app(view), 200, tenant)


@router.post("/save")
async def save_to_chart(
    request: Request,
    settings: SettingsDep,
    tenants: TenantsDep,
    smart: SmartDep,
    http: HttpDep,
    clock: ClockDep,
    resources: ResourcesDep,
) -> Response:
    """Write the score as a RiskAssessment to the EHR (chart.py), then back to the view with
    what happened. The score is computed again from the record; only its name is taken from
    the form, with the session's CSRF token."""
    session_id = request.cookies.get(COOKIE)
    session = await smart.sessions.get(session_id)
    if session is None or session.get("stage") != "ready":
        return _error(
            request,
            settings,
            SmartError("your session has ended; open the app again from the EHR", status=401),
        )
    form = await read_small_form(request)
    sent = str(form.get("csrf", ""))
    if not sent or not hmac.compare_digest(sent.encode(), str(session.get("csrf", "")).encode()):
        return _error(
            request, settings, SmartError("the form has expired; reload the page", status=403)
        )
    name = str(form.get("score", ""))
    iss = session["iss"]
    try:
        tenant = _tenant_for(tenants, iss)
        assert tenant.smart is not None
        if not (tenant.smart.write_back and can_create(session.get("scope"))):
            raise SmartError("saving to the chart is not allowed for this sign-in", status=403)
        if name not in OUTCOMES:
            raise SmartError("this score cannot be saved to the chart", status=400)
        started = time.perf_counter()
        config = await smart.discovery.get(iss)
        token = _session_token(smart, http, config, tenant.smart, clock, str(session_id), session)
        data = await fetch_patient_data(
            http, iss, str(session["patient"]), token, max_depth=settings.max_json_depth
        )
        access = await token(False)  # refreshed above when it had expired
    except SmartError as error:
        return _error(request, settings, error, iss)
    now = clock()
    result = score_from_fhir(name, data.resources, now)
    if result.value is None:
        notice = {"ok": False, "text": f"Not saved: the score is not computable ({result.reason})"}
    else:
        resource = risk_assessment(
            name=name,
            title=SCORES[name].title,
            value=result.value,
            unit=result.unit,
            category=category(name, result.value, result.inputs),
            sources=result.sources,
            patient_id=str(session["patient"]),
            encounter_id=session.get("encounter"),
            performer=session.get("fhir_user"),
            now=now,
        )
        saved = await write_risk_assessment(http, iss, access, resource)
        notice = {"ok": saved.reference is not None, "text": saved.message}
        entry = AuditEntry(
            at=now,
            kind="chart-write",
            tenant=tenant.id,
            issuer=iss,
            service=name,
            hook=None,
            hook_instance=None,
            patient_id=str(session["patient"]),
            user_id=session.get("fhir_user"),
            outcome=saved.status,
            cards=0,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            detail=saved.reference or f"{saved.status} not saved",
        )
        try:
            await resources.audit.record(entry)
        except Exception:  # the write happened; an audit failure is logged, never hidden
            log.exception("audit of a chart write failed")
    session["notice"] = notice
    await smart.sessions.put(str(session_id), session)
    return RedirectResponse(
        f"{_base(request, settings)}/smart/app", status_code=303, headers=_headers(tenant)
    )


def _session_token(
    smart: SmartRuntime,
    http: httpx.AsyncClient,
    config: SmartConfiguration,
    client: SmartClient,
    clock: Clock,
    session_id: str,
    session: dict[str, Any],
) -> TokenProvider:
    """The session's access token for FHIR calls, refreshed (and the session saved) when it has
    expired or the server refused it (`force`): the view and the chart write share it."""

    async def token(force: bool) -> str:
        if force or clock().timestamp() > float(session["expires_at"]) - 10:
            if not session.get("refresh_token"):
                raise SmartError("the access token expired and cannot be refreshed", status=401)
            fresh = await oauth.refresh(http, config, client, session["refresh_token"])
            session["access_token"] = fresh["access_token"]
            session["refresh_token"] = fresh.get("refresh_token", session["refresh_token"])
            session["expires_at"] = clock().timestamp() + float(fresh.get("expires_in", 300))
            await smart.sessions.put(session_id, session)
        return str(session["access_token"])

    return token


@router.post("/logout")
async def logout(
    request: Request,
    settings: SettingsDep,
    tenants: TenantsDep,
    smart: SmartDep,
    http: HttpDep,
) -> Response:
    """Revoke the tokens where the EHR allows it, end the session, clear the cookie."""
    session_id = request.cookies.get(COOKIE)
    session = await smart.sessions.get(session_id)
    iss = session.get("iss") if session else None
    if session is not None and session.get("stage") == "ready":
        try:
            tenant = _tenant_for(tenants, session["iss"])
            assert tenant.smart is not None
            config = await smart.discovery.get(session["iss"])
            for name in ("refresh_token", "access_token"):
                if session.get(name):
                    await oauth.revoke(http, config, tenant.smart, session[name])
        except SmartError:
            pass  # signing out locally still happens
    await smart.sessions.delete(session_id)
    relaunch = _launch_url(request, settings, iss) if iss else None
    response = _page(
        render_error(
            title="Signed out",
            message="You have signed out of the app.",
            relaunch_url=relaunch,
            status=200,
        )
    )
    response.delete_cookie(COOKIE, path="/smart")
    return response
