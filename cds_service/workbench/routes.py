"""The workbench's pages and its JSON API (`/workbench`, `/workbench/api/...`).

Readers see the rules, their live figures and population simulations (aggregates, no patient);
authors also use the playground (sample patients' data) and see example patient ids. A draft in
the playground lives in a scratch rules directory (`drafts.py`): it never reaches the served rules.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cds_service.api.body import parse_body
from cds_service.audit.summary import Window
from cds_service.deps import SettingsDep, StateDep
from cds_service.exceptions import CDSServiceError, Issue, RequestError
from cds_service.fhir_double import FhirDouble
from cds_service.population.moments import SIMULATED
from cds_service.population.simulate import BASE_URL
from cds_service.resources import Resources
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.explain import ExplainError, run_rule, trace_json
from cds_service.rules.pipeline import FhirSource
from cds_service.rules.testing.runner import run_rule_tests
from cds_service.state import AppState
from cds_service.wire.outcome import issues_from_validation
from cds_service.wire.request import HookRequest
from cds_service.workbench.analytics import daily, rule_figures, window_of
from cds_service.workbench.api_models import (
    DraftBody,
    EvaluateBody,
    RuleDetail,
    RulesResponse,
)
from cds_service.workbench.auth import Author, Reader, WorkbenchUser
from cds_service.workbench.drafts import (
    DraftCheck,
    DraftDir,
    check_draft,
    draft_directory,
    run_draft_tests,
)
from cds_service.workbench.pages import (
    render_error,
    render_playground,
    render_rule,
    render_rules,
)
from cds_service.workbench.runtime import WorkbenchRuntime
from cds_service.workbench.simulations import rows_for

__all__ = ["CSP", "router"]

router = APIRouter()

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_STATIC = {"workbench.css": "text/css", "workbench.js": "text/javascript"}
Days = Annotated[int, Query(ge=1, le=366, description="the window: the last N days")]

BLANK_RULE = """\
schema: cds-rule/1
id: my-new-rule
version: 1
status: draft
hook: patient-view
service: preventive-care
title: What the card is about
description: >
  When the rule fires and why (the evidence), in a few sentences.
author: Your name or team
references:
  - https://www.uspreventiveservicestaskforce.org/
prefetch:
  patient: Patient/{{context.patientId}}
let:
  ageYears: "%age"
when:
  all:
    - id: adult
      fhirpath: "%ageYears >= 18"
card:
  summary: "A one-line summary (under 140 characters)"
  indicator: info
  source:
    label: Where the recommendation comes from
"""


BLANK_TESTS = """\
schema: cds-rule-test/1
now: 2026-01-15T10:00:00Z

cases:
  - name: fires for an adult
    context: {userId: Practitioner/1, patientId: p1}
    prefetch:
      patient: {resourceType: Patient, id: p1, gender: female, birthDate: "1980-04-02"}
    expect:
      cards:
        - summary: "A one-line summary (under 140 characters)"
          indicator: info
  - name: silent for a child
    context: {userId: Practitioner/1, patientId: p1}
    prefetch:
      patient: {resourceType: Patient, id: p1, gender: female, birthDate: "2015-04-02"}
    expect:
      cards: []
"""


class _Unprocessable(CDSServiceError):
    status_code = 422
    issue_code = "processing"


class _NotFound(CDSServiceError):
    status_code = 404
    issue_code = "not-found"


class _Unavailable(CDSServiceError):
    status_code = 503
    issue_code = "transient"


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers={"Content-Security-Policy": CSP})


def _json(payload: Any, status: int = 200) -> Response:
    import orjson

    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _runtime(request: Request) -> WorkbenchRuntime:
    runtime: WorkbenchRuntime = request.app.state.workbench
    return runtime


def _resources(request: Request) -> Resources:
    found: Resources = request.app.state.resources
    return found


def _served(state: AppState) -> dict[str, CompiledRule]:
    ruleset = state.rules.ruleset if state.rules is not None else None
    return dict(ruleset.rules) if ruleset is not None else {}


def _served_root(state: AppState) -> Path:
    return state.rules.root if state.rules is not None else state.settings.rules_dir


def _now(state: AppState) -> datetime:
    return state.clock()


async def _figures(request: Request, state: AppState, days: int) -> tuple[Window, list[Any]]:
    window = window_of(days, _now(state))
    res = _resources(request)
    figures = await rule_figures(res.audit, res.feedback, _served(state), window)
    return window, [f.to_json() for f in figures]


async def _simulations(request: Request, user: WorkbenchUser) -> dict[tuple[str, str], Any]:
    store = await _runtime(request).simulations()
    latest = await store.latest()
    return {key: s.to_json(examples=user.role == "author") for key, s in latest.items()}


# -- static files and pages -------------------------------------------------------------------


@router.get("/workbench/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    if name not in _STATIC:
        raise _NotFound(f"no such file: {name}")
    text = resources.files("cds_service.workbench").joinpath("static", name).read_bytes()
    return Response(
        text, media_type=_STATIC[name], headers={"Cache-Control": "public, max-age=300"}
    )


@router.get("/workbench", include_in_schema=False)
async def home() -> Response:
    return RedirectResponse("/workbench/rules", status_code=303)


@router.get("/workbench/rules", include_in_schema=False)
async def rules_page(request: Request, user: Reader, state: StateDep, days: Days = 30) -> Response:
    _, figures = await _figures(request, state, days)
    sims = await _simulations(request, user)
    problem = state.rules.problem if state.rules is not None else None
    return _html(render_rules(user, figures, days, sims, problem))


async def _rule_detail(
    request: Request, state: AppState, user: WorkbenchUser, rule_id: str, days: int
) -> dict[str, Any]:
    window, figures = await _figures(request, state, days)
    found = next((f for f in figures if f["rule"] == rule_id), None)
    if found is None:
        raise _NotFound(f"no rule '{rule_id}' is served or has data in the window")
    res = _resources(request)
    issued = await res.audit.issued_times(window, rule_id)
    feedback = await res.feedback.feedback_times(rule_id, since=window.since, until=window.until)
    store = await _runtime(request).simulations()
    sims = [s.to_json(examples=user.role == "author") for s in await store.for_rule(rule_id)]
    rule = _served(state).get(rule_id)
    source = tests = None
    if rule is not None:
        source = rule.path.read_text(encoding="utf-8")
        test_path = rule.path.with_name(f"{rule.path.stem}.test.yaml")
        tests = test_path.read_text(encoding="utf-8") if test_path.is_file() else None
    assert window.since is not None and window.until is not None
    return {
        "since": window.since,
        "until": window.until,
        "days": days,
        "figures": found,
        "timeline": daily(window, issued, feedback),
        "simulations": sims,
        "source": source,
        "tests": tests,
    }


def _served_tests(root: Path, rule: CompiledRule) -> dict[str, Any] | None:
    test_path = rule.path.with_name(f"{rule.path.stem}.test.yaml")
    if not test_path.is_file():
        return None
    report = run_rule_tests(root, pattern=f"^{re.escape(rule.id)}/")
    cases = [
        {
            "name": r.name,
            "line": r.line,
            "ok": r.ok,
            "status": r.status,
            "failures": r.failures,
        }
        for r in report.results
    ]
    problems = [
        {"line": i.line, "col": i.col, "message": i.message}
        for p in report.plans
        if p.path == test_path
        for i in p.issues
    ]
    return {
        "cases": cases,
        "passed": sum(1 for c in cases if c["ok"]),
        "failed": sum(1 for c in cases if not c["ok"]),
        "problems": problems,
    }


async def _tests_of(request: Request, state: AppState, rule: CompiledRule) -> dict[str, Any] | None:
    """The served rule's test results (cached until the rule or its tests change)."""
    test_path = rule.path.with_name(f"{rule.path.stem}.test.yaml")
    stamp = tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in (rule.path, test_path))
    key = (rule.id, *stamp)
    runtime = _runtime(request)
    if key not in runtime.tests_cache:
        result = await runtime.run(_served_tests, _served_root(state), rule)
        if len(runtime.tests_cache) > 200:
            runtime.tests_cache.clear()
        runtime.tests_cache[key] = result
    return runtime.tests_cache[key]


@router.get("/workbench/rules/{rule_id}", include_in_schema=False)
async def rule_page(
    request: Request, rule_id: str, user: Reader, state: StateDep, days: Days = 30
) -> Response:
    try:
        detail = await _rule_detail(request, state, user, rule_id, days)
    except _NotFound as exc:
        return _html(render_error(user, "No such rule", exc.message), 404)
    rule = _served(state).get(rule_id)
    tests = await _tests_of(request, state, rule) if rule is not None else None
    html = render_rule(
        user,
        detail["figures"],
        days,
        detail["timeline"],
        detail["source"],
        detail["tests"],
        tests,
        detail["simulations"],
        can_simulate=rule is not None and _runtime(request).population is not None,
    )
    return _html(html)


@router.get("/workbench/playground", include_in_schema=False)
async def playground_page(
    request: Request, user: Author, state: StateDep, rule: str | None = None
) -> Response:
    served = _served(state)
    rule_text, tests_text = BLANK_RULE, BLANK_TESTS
    if rule:
        chosen = served.get(rule)
        if chosen is None:
            return _html(render_error(user, "No such rule", f"no rule '{rule}' is served"), 404)
        rule_text = chosen.path.read_text(encoding="utf-8")
        test_path = chosen.path.with_name(f"{chosen.path.stem}.test.yaml")
        tests_text = test_path.read_text(encoding="utf-8") if test_path.is_file() else ""
    listed = sorted((r.id, r.rule.hook) for r in served.values())
    html = render_playground(user, rule_text, tests_text, listed, _runtime(request).population_name)
    return _html(html)


# -- the analytics API ---------------------------------------------------------------------------


@router.get(
    "/workbench/api/rules",
    tags=["Workbench"],
    summary="Every rule with its live figures over a window",
    response_model=RulesResponse,
)
async def api_rules(request: Request, user: Reader, state: StateDep, days: Days = 30) -> Any:
    window, figures = await _figures(request, state, days)
    return {"since": window.since, "until": window.until, "days": days, "rules": figures}


@router.get(
    "/workbench/api/rules/{rule_id}",
    tags=["Workbench"],
    summary="One rule: figures, cards and feedback per day, simulations, YAML",
    response_model=RuleDetail,
)
async def api_rule(
    request: Request, rule_id: str, user: Reader, state: StateDep, days: Days = 30
) -> Any:
    return await _rule_detail(request, state, user, rule_id, days)


@router.post(
    "/workbench/api/rules/{rule_id}/simulate",
    tags=["Workbench"],
    summary="Simulate the served version on the sample population and record it",
)
async def api_simulate_served(
    request: Request, rule_id: str, user: Author, state: StateDep
) -> Response:
    rule = _served(state).get(rule_id)
    if rule is None:
        raise _NotFound(f"no rule '{rule_id}' is served")
    runtime = _runtime(request)
    text = rule.path.read_text(encoding="utf-8")
    report = await _simulate_text(runtime, _served_root(state), text, rule.rule.hook)
    store = await runtime.simulations()
    rows = rows_for(
        report,
        {rule.id: str(rule.rule.version)},
        source=runtime.population_name or "sample",
        at=datetime.now(UTC),
    )
    await store.add(rows)
    return _json({"recorded": [r.to_json(examples=True) for r in rows]})


# -- the playground API -------------------------------------------------------------------------


def _lint(served: Path, body: DraftBody) -> dict[str, Any]:
    with draft_directory(served, body.rule, body.tests) as draft:
        checked = check_draft(draft)
        return _check_json(draft, checked)


def _check_json(draft: DraftDir, checked: DraftCheck) -> dict[str, Any]:
    rule = checked.rule
    return {
        "ok": not checked.errors,
        "issues": [i.to_json() for i in checked.issues],
        "rule": None
        if rule is None
        else {
            "id": rule.id,
            "version": str(rule.rule.version),
            "hook": rule.rule.hook,
            "service": rule.rule.service,
            "status": rule.rule.status,
        },
    }


def _refuse_broken(checked: dict[str, Any]) -> None:
    if not checked["ok"] or checked["rule"] is None:
        errors = [i for i in checked["issues"] if i["severity"] == "error"]
        issues = [
            Issue(
                f"{i['file']} line {i['line']}:{i['col']}: "
                + (f"{i['field']}: " if i["field"] else "")
                + i["message"],
                i["field"] or None,
                "invalid",
            )
            for i in errors
        ] or [Issue("the draft defines no rule", None, "invalid")]
        raise _Unprocessable("the draft rule does not load; fix its errors first", issues=issues)


@router.post(
    "/workbench/api/playground/lint",
    tags=["Workbench"],
    summary="Lint a draft rule (and its tests): every problem at its line:col",
)
async def api_lint(
    request: Request, user: Author, settings: SettingsDep, state: StateDep
) -> Response:
    body = await parse_body(request, settings, DraftBody, "draft")
    return _json(await _runtime(request).run(_lint, _served_root(state), body))


def _tests(served: Path, body: DraftBody) -> dict[str, Any]:
    with draft_directory(served, body.rule, body.tests) as draft:
        checked = _check_json(draft, check_draft(draft))
        if checked["ok"] and checked["rule"] is not None:
            checked["tests"] = run_draft_tests(draft)
        return checked


@router.post(
    "/workbench/api/playground/test",
    tags=["Workbench"],
    summary="Run a draft rule's tests",
)
async def api_test(
    request: Request, user: Author, settings: SettingsDep, state: StateDep
) -> Response:
    body = await parse_body(request, settings, DraftBody, "draft")
    if not (body.tests or "").strip():
        raise RequestError(
            "no tests to run", issues=[Issue("tests: write at least one case", "tests", "required")]
        )
    result = await _runtime(request).run(_tests, _served_root(state), body)
    _refuse_broken(result)
    return _json(result)


def _request_from(body: EvaluateBody) -> HookRequest:
    try:
        return HookRequest.model_validate(body.request)
    except Exception as exc:
        from pydantic import ValidationError

        if not isinstance(exc, ValidationError):
            raise
        issues = [
            Issue(i.message, f"request.{i.field}" if i.field else "request", i.code)
            for i in issues_from_validation(exc)
        ]
        raise RequestError("invalid request: not a CDS Hooks request", issues=issues) from None


@router.post(
    "/workbench/api/playground/evaluate",
    tags=["Workbench"],
    summary="Evaluate a draft rule on a sample patient or a pasted request, with its trace",
)
async def api_evaluate(
    request: Request, user: Author, settings: SettingsDep, state: StateDep
) -> Response:
    body = await parse_body(request, settings, EvaluateBody, "evaluation")
    runtime = _runtime(request)
    served = _served_root(state)
    hook_request = _request_from(body) if body.request is not None else None
    if body.patient is not None and runtime.population is None:
        raise _Unavailable(
            "no sample population: set CDS_WORKBENCH_POPULATION to try rules on patients"
        )

    def evaluate() -> dict[str, Any]:
        with draft_directory(served, body.rule, body.tests) as draft:
            checked = check_draft(draft)
            result = _check_json(draft, checked)
            if not result["ok"] or checked.rule is None:
                return result
            rule = checked.rule
            if hook_request is not None:
                at = body.at or _now(state)
                outcome = _in_loop(rule, checked, hook_request, at, None)
                result["call"] = {"hook": hook_request.hook, "at": _stamp(at), "source": "request"}
            else:
                assert runtime.population is not None and body.patient is not None
                if runtime.population.record(body.patient) is None:
                    raise _NotFound(f"patient '{body.patient}' is not in the sample population")
                moment = runtime.population.moment(body.patient, rule.rule.hook, body.at)
                if moment is None:
                    raise _Unprocessable(
                        f"no {rule.rule.hook} call can be derived for this patient (the "
                        "simulation needs an encounter, an order or an appointment for it)"
                    )
                call = HookRequest.model_validate(
                    {
                        "hook": moment.hook,
                        "hookInstance": str(uuid.uuid4()),
                        "fhirServer": BASE_URL,
                        "context": moment.context,
                    }
                )
                outcome = _in_loop(rule, checked, call, moment.at, moment.record)
                result["call"] = {
                    "hook": moment.hook,
                    "at": _stamp(moment.at),
                    "source": "patient",
                    "context": moment.context,
                }
            result["trace"] = outcome
            return result

    return _json(await runtime.run(evaluate))


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _in_loop(
    rule: CompiledRule,
    checked: DraftCheck,
    call: HookRequest,
    at: datetime,
    record: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The rule's trace on `call` (fetching from `record` when given), on this thread's loop."""
    import asyncio

    async def job() -> dict[str, Any]:
        if record is None:
            run = await run_rule(rule, checked.ruleset, call, at)
            return trace_json(run)
        double = FhirDouble(record, base_url=BASE_URL, record=False)
        async with httpx.AsyncClient(transport=httpx.MockTransport(double.handle)) as client:
            run = await run_rule(
                rule, checked.ruleset, call, at, source=FhirSource(client, max_pages=100)
            )
        return trace_json(run)

    try:
        return asyncio.run(job())
    except ExplainError as exc:
        raise _Unprocessable(str(exc)) from None


def _simulate_in(served: Path, text: str, hook: str, runtime: WorkbenchRuntime) -> Any:
    assert runtime.population is not None
    with draft_directory(served, text) as draft:
        checked = check_draft(draft)
        result = _check_json(draft, checked)
        _refuse_broken(result)
        return runtime.population.simulate(draft.root, hook)


async def _simulate_text(runtime: WorkbenchRuntime, served: Path, text: str, hook: str) -> Any:
    if runtime.population is None:
        raise _Unavailable("no sample population: set CDS_WORKBENCH_POPULATION to simulate rules")
    if hook not in SIMULATED:
        raise _Unprocessable(f"calls on hook '{hook}' cannot be derived from a population")
    return await runtime.simulate(_simulate_in, served, text, hook, runtime)


@router.post(
    "/workbench/api/playground/simulate",
    tags=["Workbench"],
    summary="Simulate a draft rule on the sample population (nothing recorded)",
)
async def api_simulate(
    request: Request, user: Author, settings: SettingsDep, state: StateDep
) -> Response:
    body = await parse_body(request, settings, DraftBody, "draft")
    runtime = _runtime(request)
    checked = await runtime.run(_lint, _served_root(state), body)
    _refuse_broken(checked)
    rule = checked["rule"]
    report = await _simulate_text(runtime, _served_root(state), body.rule, rule["hook"])
    row = next((r for r in report.rules if r.rule == rule["id"]), None)
    service = next(
        (s for s in report.services if s.service == rule["service"] and s.hook == rule["hook"]),
        None,
    )
    return _json(
        {
            "patients": report.patients,
            "rule": row.model_dump(by_alias=True) if row is not None else None,
            "service": service.model_dump(by_alias=True) if service is not None else None,
        }
    )


@router.get(
    "/workbench/api/playground/patients",
    tags=["Workbench"],
    summary="The sample population's patients (authors only)",
)
async def api_patients(request: Request, user: Author) -> Response:
    runtime = _runtime(request)
    if runtime.population is None:
        return _json({"population": None, "patients": []})
    patients = await runtime.run(runtime.population.patients)
    return _json(
        {"population": runtime.population_name, "patients": [p.to_json() for p in patients]}
    )
