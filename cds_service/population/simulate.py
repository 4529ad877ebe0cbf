"""Simulating a patient's history through the services, as the HTTP service would answer it.

For each `Moment` of the record (moments.py) every service of the hook is called through the
one evaluation pipeline (`evaluate_call`, as the HTTP route): its prefetch is answered from the
record as it stood then by the FHIR double, from the templates the service advertises (so
narrowing applies as in production), the risk scores are computed from the call's data, and the
outcome is counted into a `Report`. Draft (shadow) rules are evaluated and counted as `shadow`.

The services are built once per process (`services_for`): a Dask worker builds them on its first
partition and reuses them for every other.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from cds_service.fhir_double import FhirDouble
from cds_service.population.moments import (
    NOT_SIMULATED,
    SIMULATED,
    Moment,
    Window,
    date_of,
    moments,
    recorded_at,
)
from cds_service.population.report import Report
from cds_service.rules.pipeline import CallResult, FhirSource, evaluate_call
from cds_service.rules.ruleset import load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.service import RuleStats, services_from_rules
from cds_service.scores.sources import ComputedScores
from cds_service.services.builtin import builtin_services
from cds_service.services.definition import ServiceDefinition
from cds_service.services.plugin_services import plugin_services
from cds_service.wire.request import HookRequest

__all__ = [
    "BASE_URL",
    "REPLAY_BUDGET_SECONDS",
    "CallObserver",
    "Options",
    "calls_of",
    "last_encounter",
    "rules_digest",
    "services_for",
    "simulate_record",
]

BASE_URL = "https://population.invalid/fhir"
# A simulation measures what the rules decide, not how fast: the production per-call rule budget
# (CDS_RULE_BUDGET_SECONDS, 1 s shared by a service's rules) would turn a slow moment of the
# machine into a "timeout" outcome and a failed gate. Services built for a simulation get this.
REPLAY_BUDGET_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Options:
    """What to simulate. Without a window: patient-view at `at`, or at each record's last date
    (the whole record visible), and the other hooks at the record's last encounter (its start,
    or its end for discharge). A record without an encounter is not called."""

    rules_dir: str
    hooks: tuple[str, ...] = ("patient-view",)
    window: Window | None = None
    at: datetime | None = None
    builtins: bool = True

    def describe(self) -> dict[str, Any]:
        """The parameters a job's results depend on (the job key): the rules' content too."""
        return {
            "rules": self.rules_dir,
            "rulesDigest": rules_digest(Path(self.rules_dir)),
            "hooks": list(self.hooks),
            "from": self.window.start.isoformat() if self.window and self.window.start else None,
            "to": self.window.end.isoformat() if self.window and self.window.end else None,
            "at": self.at.isoformat() if self.at else None,
            "builtins": self.builtins,
        }

    def report(self) -> Report:
        wanted = set(self.hooks)
        hooks = tuple(h for h in SIMULATED if h in wanted)
        return Report(hooks=hooks, not_simulated=dict(NOT_SIMULATED))


def rules_digest(rules_dir: Path) -> str:
    """A digest of every file under the rules directory (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in rules_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(rules_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def services_for(rules_dir: str, builtins: bool) -> tuple[ServiceDefinition, ...]:
    """The services of a rules directory (and the built-in ones), built once per process."""
    ruleset = load_ruleset(Path(rules_dir), known_score_names())
    if ruleset.errors:
        listed = "\n".join(str(i) for i in ruleset.errors)
        raise ValueError(f"the rules do not load:\n{listed}")
    services = services_from_rules(
        ruleset, scores=ComputedScores(), stats=RuleStats(), budget_seconds=REPLAY_BUDGET_SECONDS
    )
    return tuple(services + (builtin_services() if builtins else []) + plugin_services())


def last_encounter(record: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The patient's latest encounter (by its start)."""
    dated = [
        (start, r)
        for r in record
        if r.get("resourceType") == "Encounter"
        and (start := date_of(r, "period", "start")) is not None
    ]
    return max(dated, key=lambda pair: pair[0])[1] if dated else None


def calls_of(patient_id: str, record: list[dict[str, Any]], options: Options) -> list[Moment]:
    """The calls simulated for one patient's record, in time order."""
    if options.window is not None:
        return list(moments(patient_id, record, hooks=options.hooks, window=options.window))
    last = last_encounter(record)
    found: list[Moment] = []
    if "patient-view" in options.hooks and last is not None:
        # The chart as it stands at the record's last date: everything in it is visible.
        when = options.at or max(d for r in record if (d := recorded_at(r)) is not None)
        if when is not None:
            found += moments(patient_id, record, hooks=["patient-view"], at=when)
    others = [h for h in options.hooks if h != "patient-view"]
    if last is not None and others:
        # The calls at the last encounter: a window around it, restricted to its own calls.
        start = date_of(last, "period", "start")
        end = date_of(last, "period", "end") or start
        window = Window(start, end)
        for moment in moments(patient_id, record, hooks=others, window=window):
            if moment.context.get("encounterId", last.get("id")) == last.get("id"):
                found.append(moment)
    return found


#: Sees each simulated call: the moment, the service called and what it answered.
CallObserver = Callable[[Moment, ServiceDefinition, CallResult], None]


async def simulate_record(
    services: Sequence[ServiceDefinition],
    patient_id: str,
    record: list[dict[str, Any]],
    options: Options,
    report: Report,
    observe: CallObserver | None = None,
) -> None:
    """Every call of one patient's history, counted into `report` (and shown to `observe`)."""
    report.patients += 1
    calls = calls_of(patient_id, record, options)
    if not calls:
        report.no_calls += 1
        return
    for moment in calls:
        chosen = [s for s in services if moment.hook in s.hooks]
        if not chosen:
            continue
        double = FhirDouble(moment.record, base_url=BASE_URL, record=False)
        request = HookRequest.model_validate(
            {
                "hook": moment.hook,
                "hookInstance": str(uuid.uuid4()),
                "fhirServer": BASE_URL,
                "context": moment.context,
            }
        )
        async with httpx.AsyncClient(transport=httpx.MockTransport(double.handle)) as client:
            for service in chosen:
                result = await evaluate_call(
                    service,
                    request,
                    FhirSource(client, max_pages=100),
                    now=moment.at,
                    budget_seconds=REPLAY_BUDGET_SECONDS,
                    prefetch_deadline_seconds=20.0,
                    strict=False,
                )
                report.add(service, moment.hook, patient_id, moment.at, result)
                if observe is not None:
                    observe(moment, service, result)
