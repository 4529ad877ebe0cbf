"""What a population simulation found: card rates per service and hook, outcomes per rule, months.

A `Report` is built per partition (`add` for each evaluated call) and the partitions' reports
are merged (`merge`, through their JSON form: that is what a Dask worker sends back and what
`--resume` keeps on disk). Its JSON form is `SimulationReport` (schema:
`openapi/simulation-report.schema.json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cds_service.rules.pipeline import CallResult
from cds_service.services.definition import ServiceDefinition

__all__ = [
    "EXAMPLES",
    "SCHEMA_FILE",
    "Report",
    "RuleCounts",
    "ServiceCounts",
    "SimulationReport",
    "render_schema",
]

EXAMPLES = 3  # example patients and first error messages kept per rule
SCHEMA_FILE = "simulation-report.schema.json"  # under openapi/


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ServiceRow(_Model):
    service: str
    hook: str
    calls: int = Field(ge=0)
    carded: int = Field(ge=0, description="calls answered with at least one card")
    unevaluated: int = Field(ge=0, description="calls the service would have answered 412")
    card_rate: float = Field(alias="cardRate", ge=0, le=1)
    over_limit: bool = Field(alias="overLimit", description="card rate above maxCardRate")


class RuleRow(_Model):
    rule: str
    service: str
    hook: str
    draft: bool = Field(description="a draft (shadow) rule: its cards are never shown")
    calls: int = Field(ge=0)
    fired: int = Field(ge=0, description="fired, or would have (draft)")
    statuses: dict[str, int] = Field(description="every outcome: silent, skipped, error, …")
    fire_rate: float = Field(alias="fireRate", ge=0, le=1)
    example_patients: list[str] = Field(alias="examplePatients", max_length=EXAMPLES)
    errors: list[str] = Field(max_length=EXAMPLES, description="the first error messages")


class MonthRow(_Model):
    month: str = Field(pattern=r"^\d{4}-\d{2}$")
    service: str
    hook: str
    calls: int = Field(ge=0)
    carded: int = Field(ge=0)


class SimulationReport(_Model):
    """`cds-service rules simulate --format json`."""

    schema_: str = Field("cds-simulation-report/1", alias="schema")
    patients: int = Field(ge=0)
    patients_without_calls: int = Field(alias="patientsWithoutCalls", ge=0)
    calls: int = Field(ge=0)
    max_card_rate: float = Field(alias="maxCardRate", ge=0, le=1)
    hooks: list[str] = Field(description="the hooks simulated")
    not_simulated: dict[str, str] = Field(
        alias="notSimulated", description="hooks of the library no call could be derived for"
    )
    services: list[ServiceRow]
    rules: list[RuleRow]
    months: list[MonthRow]


def _month(at: datetime) -> str:
    """The calendar month of an instant, in UTC (a record's local offsets vary)."""
    return (at.astimezone(UTC) if at.tzinfo else at).strftime("%Y-%m")


@dataclass(slots=True)
class ServiceCounts:
    calls: int = 0
    carded: int = 0  # calls answered with at least one card
    unevaluated: int = 0  # calls the service would answer 412

    @property
    def rate(self) -> float:
        return self.carded / self.calls if self.calls else 0.0

    def merge(self, other: ServiceCounts) -> None:
        self.calls += other.calls
        self.carded += other.carded
        self.unevaluated += other.unevaluated


@dataclass(slots=True)
class RuleCounts:
    service: str
    hook: str
    draft: bool = False
    statuses: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)  # patients it fired for
    errors: list[str] = field(default_factory=list)  # the first few reasons

    @property
    def calls(self) -> int:
        return sum(self.statuses.values())

    @property
    def fired(self) -> int:
        return self.statuses.get("fired", 0) + self.statuses.get("shadow", 0)

    @property
    def rate(self) -> float:
        return self.fired / self.calls if self.calls else 0.0

    def merge(self, other: RuleCounts) -> None:
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.examples = sorted({*self.examples, *other.examples})[:EXAMPLES]
        self.errors = (self.errors + other.errors)[:EXAMPLES]


@dataclass(slots=True)
class Report:
    """Counts over the simulated calls."""

    hooks: tuple[str, ...] = ("patient-view",)
    not_simulated: dict[str, str] = field(default_factory=dict)
    patients: int = 0
    no_calls: int = 0  # patients for whom no call could be derived
    services: dict[tuple[str, str], ServiceCounts] = field(default_factory=dict)
    rules: dict[str, RuleCounts] = field(default_factory=dict)
    months: dict[tuple[str, str, str], ServiceCounts] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return sum(c.calls for c in self.services.values())

    def add(
        self, service: ServiceDefinition, hook: str, patient: str, at: datetime, call: CallResult
    ) -> None:
        carded = bool(call.result.cards)
        for counts in (
            self.services.setdefault((service.id, hook), ServiceCounts()),
            self.months.setdefault((_month(at), service.id, hook), ServiceCounts()),
        ):
            counts.calls += 1
            counts.carded += carded
            counts.unevaluated += bool(call.unevaluated)
        trace = call.trace
        pairs = zip(trace.rules, trace.outcomes, strict=True) if trace is not None else ()
        for compiled, outcome in pairs:
            draft = compiled.rule.status == "draft"
            rule = self.rules.setdefault(outcome.rule_id, RuleCounts(service.id, hook, draft))
            status = "shadow" if draft and outcome.status == "fired" else outcome.status
            rule.statuses[status] = rule.statuses.get(status, 0) + 1
            fired = status in ("fired", "shadow")
            if fired and len(rule.examples) < EXAMPLES and patient not in rule.examples:
                rule.examples.append(patient)
            if outcome.status in ("error", "timeout") and len(rule.errors) < EXAMPLES:
                rule.errors.append(f"{patient} at {at.isoformat()}: {outcome.reason}")

    def merge(self, other: Report) -> None:
        self.patients += other.patients
        self.no_calls += other.no_calls
        for pair, counts in other.services.items():
            self.services.setdefault(pair, ServiceCounts()).merge(counts)
        for month, counts in other.months.items():
            self.months.setdefault(month, ServiceCounts()).merge(counts)
        for rid, rule in other.rules.items():
            mine = self.rules.setdefault(rid, RuleCounts(rule.service, rule.hook, rule.draft))
            mine.merge(rule)

    def over(self, max_rate: float) -> list[tuple[str, str]]:
        """The (service, hook) pairs whose card rate is above `max_rate`."""
        return sorted(key for key, c in self.services.items() if c.rate > max_rate)

    def failing_rules(self) -> list[str]:
        return sorted(
            r for r, c in self.rules.items() if c.statuses.get("error") or c.statuses.get("timeout")
        )

    def model(self, max_rate: float = 0.15) -> SimulationReport:
        return SimulationReport(
            patients=self.patients,
            patients_without_calls=self.no_calls,
            calls=self.calls,
            max_card_rate=max_rate,
            hooks=list(self.hooks),
            not_simulated=dict(self.not_simulated),
            services=[
                ServiceRow(
                    service=sid,
                    hook=hook,
                    calls=c.calls,
                    carded=c.carded,
                    unevaluated=c.unevaluated,
                    card_rate=round(c.rate, 4),
                    over_limit=c.rate > max_rate,
                )
                for (sid, hook), c in sorted(self.services.items())
            ],
            rules=[
                RuleRow(
                    rule=rid,
                    service=c.service,
                    hook=c.hook,
                    draft=c.draft,
                    calls=c.calls,
                    fired=c.fired,
                    statuses=dict(sorted(c.statuses.items())),
                    fire_rate=round(c.rate, 4),
                    example_patients=c.examples,
                    errors=c.errors,
                )
                for rid, c in sorted(self.rules.items())
            ],
            months=[
                MonthRow(month=month, service=sid, hook=hook, calls=c.calls, carded=c.carded)
                for (month, sid, hook), c in sorted(self.months.items())
            ],
        )

    def to_json(self, max_rate: float = 0.15) -> dict[str, Any]:
        return self.model(max_rate).model_dump(by_alias=True, mode="json")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """The report a `to_json` made (a partition's result, sent back by its worker)."""
        model = SimulationReport.model_validate(data)
        report = cls(tuple(model.hooks), dict(model.not_simulated), model.patients)
        report.no_calls = model.patients_without_calls
        for row in model.services:
            report.services[(row.service, row.hook)] = ServiceCounts(
                row.calls, row.carded, row.unevaluated
            )
        for month in model.months:
            report.months[(month.month, month.service, month.hook)] = ServiceCounts(
                month.calls, month.carded
            )
        for rule in model.rules:
            report.rules[rule.rule] = RuleCounts(
                rule.service,
                rule.hook,
                rule.draft,
                dict(rule.statuses),
                list(rule.example_patients),
                list(rule.errors),
            )
        return report


def render_schema() -> str:
    """The JSON Schema of `--format json`, as committed under openapi/ (`make openapi`)."""
    schema = SimulationReport.model_json_schema(by_alias=True)
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Generated by `cds-service rules simulate --schema`; do not edit",
        **schema,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
