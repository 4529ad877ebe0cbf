"""The workbench's pages and its JSON API (`/workbench`, `/workbench/api/...`).

Readers see the rules, their live figures and population simulations (aggregates, no patient);
authors also use the playground (sample patients' data) and see example patient ids. A draft in
the playground lives in a scratch rules directory (`drafts.py`): it never reaches the served rules.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cds_service.api.body import parse_body
from cds_service.audit.summary import Window
from cds_service.deps import SettingsDep, StateDep
from cds_service.exceptions import Issue, RequestError
from cds_service.population.moments import SIMULATED
from cds_service.population.report import SimulationReport
from cds_service.resources import Resources
from cds_service.rules.compiled import CompiledRule
from cds_service.state import AppState
from cds_service.wire.outcome import issues_from_validation
from cds_service.wire.request import HookRequest
from cds_service.workbench.analytics import daily, rule_figures, window_of
from cds_service.workbench.api_models import DraftBody, EvaluateBody, RuleDetail, RulesResponse
from cds_service.workbench.auth import Author, Reader, WorkbenchUser
from cds_service.workbench.jobs import (
    JobRefused,
    evaluate_job,
    lint_job,
    served_tests_job,
    simulate_job,
    tests_job,
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


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers={"Content-Security-Policy": CSP})


def _json(payload: Any, status: int = 200) -> Response:
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
        raise JobRefused(404, f"no such file: {name}")
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
        raise JobRefused(404, f"no rule '{rule_id}' is served or has data in the window")
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


async def _tests_of(request: Request, state: AppState, rule: CompiledRule) -> dict[str, Any] | None:
    """The served rule's test results (cached until the rule or its tests change)."""
    test_path = rule.path.with_name(f"{rule.path.stem}.test.yaml")
    stamp = tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in (rule.path, test_path))
    key = (rule.id, *stamp)
    runtime = _runtime(request)
    if key not in runtime.tests_cache:
        result = await runtime.run(served_tests_job, _served_root(state), rule.path, rule.id)
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
    except JobRefused as exc:
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
    _runtime(request).warm()
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
        raise JobRefused(404, f"no rule '{rule_id}' is served")
    runtime = _runtime(request)
    text = rule.path.read_text(encoding="utf-8")
    report = await _simulate_text(runtime, _served_root(state), text, rule.rule.hook)
    store = await runtime.simulations()
    rows = rows_for(
        report,
        {rule.id: str(rule.rule.version)},
        source=runtime.population_name or "sample",
        at=_now(state),
    )
    await store.add(rows)
    return _json({"recorded": [r.to_json(examples=True) for r in rows]})


# -- the playground API -------------------------------------------------------------------------


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
        raise JobRefused(422, "the draft rule does not load; fix its errors first", issues=issues)


@router.post(
    "/workbench/api/playground/lint",
    tags=["Workbench"],
    summary="Lint a draft rule (and its tests): every problem at its line:col",
)
async def api_lint(
    request: Request, user: Author, settings: SettingsDep, state: StateDep
) -> Response:
    body = await parse_body(request, settings, DraftBody, "draft")
    runtime = _runtime(request)
    return _json(await runtime.run(lint_job, _served_root(state), body.rule, body.tests))


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
    runtime = _runtime(request)
    result = await runtime.run(tests_job, _served_root(state), body.rule, body.tests)
    _refuse_broken(result)
    return _json(result)


def _checked_request(body: EvaluateBody) -> dict[str, Any] | None:
    """The pasted request, validated here (its problems named by field)."""
    if body.request is None:
        return None
    try:
        HookRequest.model_validate(body.request)
    except ValidationError as exc:
        issues = [
            Issue(i.message, f"request.{i.field}" if i.field else "request", i.code)
            for i in issues_from_validation(exc)
        ]
        raise RequestError("invalid request: not a CDS Hooks request", issues=issues) from None
    return body.request


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
    pasted = _checked_request(body)
    population = None
    if body.patient is not None:
        population = await runtime.population_paths()
        if population is None:
            raise JobRefused(
                503, "no sample population: set CDS_WORKBENCH_POPULATION to try rules on patients"
            )
    result = await runtime.run(
        evaluate_job,
        _served_root(state),
        body.rule,
        body.tests,
        pasted,
        body.patient,
        body.at,
        _now(state),
        population,
    )
    return _json(result)


async def _simulate_text(
    runtime: WorkbenchRuntime, served: Path, text: str, hook: str
) -> SimulationReport:
    population = await runtime.population_paths()
    if population is None:
        raise JobRefused(
            503, "no sample population: set CDS_WORKBENCH_POPULATION to simulate rules"
        )
    if hook not in SIMULATED:
        raise JobRefused(422, f"calls on hook '{hook}' cannot be derived from a population")
    result = await runtime.simulate(simulate_job, served, text, hook, population)
    _refuse_broken(result["check"])
    return SimulationReport.model_validate(result["report"])


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
    checked = await runtime.run(lint_job, _served_root(state), body.rule, None)
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
    if await runtime.population_paths() is None or runtime.population is None:
        return _json({"population": None, "patients": []})
    # Read once, when the population was prepared; kept in this process (at most 500).
    patients = [p.to_json() for p in runtime.population.patients()]
    return _json({"population": runtime.population_name, "patients": patients})
