"""The playground's work, as plain functions of plain values: they run in the workbench's worker
processes (`runtime.py`), so an author typing never holds the interpreter lock that the hooks of
EHRs need. Each takes the served rules directory and the draft's text and returns JSON; a refusal
is a `JobRefused` (status and message), which crosses the process boundary intact.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from cds_service.exceptions import CDSServiceError, Issue
from cds_service.fhir_double import FhirDouble
from cds_service.population.simulate import BASE_URL
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.explain import ExplainError, run_rule, trace_json
from cds_service.rules.pipeline import FhirSource
from cds_service.rules.ruleset import RuleSet
from cds_service.rules.testing.runner import run_rule_tests
from cds_service.wire.request import HookRequest
from cds_service.workbench.drafts import (
    DraftCheck,
    check_draft,
    draft_directory,
    run_draft_tests,
    tests_json,
)
from cds_service.workbench.population import SamplePopulation

_CODES = {404: "not-found", 422: "processing", 503: "transient"}

__all__ = [
    "JobRefused",
    "evaluate_job",
    "lint_job",
    "ready",
    "served_tests_job",
    "simulate_job",
    "tests_job",
]


class JobRefused(CDSServiceError):
    """A workbench request refused for its input: an HTTP status (404 unknown patient, 422
    cannot be evaluated, 503 no sample population...) and a message for the author. Raised in
    the playground's workers as in the routes; it crosses the process boundary intact."""

    def __init__(self, status: int, message: str, *, issues: list[Issue] | None = None) -> None:
        self.status_code = status
        self.issue_code = _CODES.get(status, "processing")
        super().__init__(message, issues=issues)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.message), {"issues": self.issues})


def _check_json(checked: DraftCheck) -> dict[str, Any]:
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


def ready() -> bool:
    """Nothing: submitted when the playground opens, so the workers are started (and have
    imported the engine) before the author's first keystroke."""
    return True


def lint_job(served: Path, rule: str, tests: str | None) -> dict[str, Any]:
    """`rules lint` of the draft."""
    with draft_directory(served, rule, tests) as draft:
        return _check_json(check_draft(draft))


def tests_job(served: Path, rule: str, tests: str | None) -> dict[str, Any]:
    """The draft linted and, when it loads, its tests run."""
    with draft_directory(served, rule, tests) as draft:
        checked = _check_json(check_draft(draft))
        if checked["ok"] and checked["rule"] is not None:
            checked["tests"] = run_draft_tests(draft)
        return checked


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _trace(
    rule: CompiledRule,
    ruleset: RuleSet,
    call: HookRequest,
    at: datetime,
    record: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The rule's trace on `call` (fetching from `record`, through a FHIR double, when given)."""

    async def job() -> dict[str, Any]:
        if record is None:
            return trace_json(await run_rule(rule, ruleset, call, at))
        double = FhirDouble(record, base_url=BASE_URL, record=False)
        async with httpx.AsyncClient(transport=httpx.MockTransport(double.handle)) as client:
            source = FhirSource(client, max_pages=100)
            return trace_json(await run_rule(rule, ruleset, call, at, source=source))

    try:
        return asyncio.run(job())
    except ExplainError as exc:
        raise JobRefused(422, str(exc)) from None


def evaluate_job(
    served: Path,
    rule_text: str,
    tests: str | None,
    request: dict[str, Any] | None,
    patient: str | None,
    at: datetime | None,
    now: datetime,
    population: tuple[Path, Path] | None,
) -> dict[str, Any]:
    """The draft on a pasted request (validated by the caller) or on a sample patient."""
    with draft_directory(served, rule_text, tests) as draft:
        checked = check_draft(draft)
        result = _check_json(checked)
        if not result["ok"] or checked.rule is None:
            return result
        rule = checked.rule
        if request is not None:
            call = HookRequest.model_validate(request)
            when = at or now
            result["trace"] = _trace(rule, checked.ruleset, call, when, None)
            result["call"] = {"hook": call.hook, "at": _stamp(when), "source": "request"}
            return result
        assert population is not None and patient is not None
        sample = SamplePopulation(*population)
        if sample.record(patient) is None:
            raise JobRefused(404, f"patient '{patient}' is not in the sample population")
        moment = sample.moment(patient, rule.rule.hook, at)
        if moment is None:
            raise JobRefused(
                422,
                f"no {rule.rule.hook} call can be derived for this patient (the simulation "
                "needs an encounter, an order or an appointment for it)",
            )
        call = HookRequest.model_validate(
            {
                "hook": moment.hook,
                "hookInstance": str(uuid.uuid4()),
                "fhirServer": BASE_URL,
                "context": moment.context,
            }
        )
        result["trace"] = _trace(rule, checked.ruleset, call, moment.at, moment.record)
        result["call"] = {
            "hook": moment.hook,
            "at": _stamp(moment.at),
            "source": "patient",
            "context": moment.context,
        }
        return result


def served_tests_job(root: Path, rule_path: Path, rule_id: str) -> dict[str, Any] | None:
    """A served rule's test results (None without a test file)."""
    test_path = rule_path.with_name(f"{rule_path.stem}.test.yaml")
    if not test_path.is_file():
        return None
    report = run_rule_tests(root, pattern=f"^{re.escape(rule_id)}/")
    problems = [
        {"line": i.line, "col": i.col, "message": i.message}
        for p in report.plans
        if p.path == test_path
        for i in p.issues
    ]
    return tests_json(report.results, problems)


def simulate_job(
    served: Path, text: str, hook: str, population: tuple[Path, Path]
) -> dict[str, Any]:
    """The draft (or a served rule's text) simulated on the sample population: its checked form
    and the report (`SimulationReport` JSON)."""
    with draft_directory(served, text) as draft:
        checked = _check_json(check_draft(draft))
        if not checked["ok"] or checked["rule"] is None:
            return {"check": checked, "report": None}
        report = SamplePopulation(*population).simulate(draft.root, hook)
        return {"check": checked, "report": report.model_dump(by_alias=True)}
