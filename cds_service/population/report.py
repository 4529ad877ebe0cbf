"""What a population replay found: per service, the card rate; per rule, its outcomes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds_service.rules.pipeline import CallResult
from cds_service.services.definition import ServiceDefinition

__all__ = ["Report", "RuleCounts", "ServiceCounts"]

EXAMPLES = 3


@dataclass(slots=True)
class ServiceCounts:
    calls: int = 0
    carded: int = 0  # calls answered with at least one card
    unevaluated: int = 0  # calls the service would answer 412

    @property
    def rate(self) -> float:
        return self.carded / self.calls if self.calls else 0.0


@dataclass(slots=True)
class RuleCounts:
    service: str
    statuses: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)  # patients it fired for
    errors: list[str] = field(default_factory=list)  # the first few reasons

    @property
    def calls(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        fired = self.statuses.get("fired", 0) + self.statuses.get("shadow", 0)
        return fired / self.calls if self.calls else 0.0


@dataclass(slots=True)
class Report:
    """Counts over the replayed calls."""

    hook: str = "patient-view"
    patients: int = 0
    no_encounter: int = 0
    services: dict[str, ServiceCounts] = field(default_factory=dict)
    rules: dict[str, RuleCounts] = field(default_factory=dict)

    def add(self, service: ServiceDefinition, patient: str, at: datetime, call: CallResult) -> None:
        counts = self.services.setdefault(service.id, ServiceCounts())
        counts.calls += 1
        counts.carded += bool(call.result.cards)
        counts.unevaluated += bool(call.unevaluated)
        trace = call.trace
        pairs = zip(trace.rules, trace.outcomes, strict=True) if trace is not None else ()
        for compiled, outcome in pairs:
            rule = self.rules.setdefault(outcome.rule_id, RuleCounts(service.id))
            shadow = compiled.rule.status == "draft"
            status = "shadow" if shadow and outcome.status == "fired" else outcome.status
            rule.statuses[status] = rule.statuses.get(status, 0) + 1
            if status in ("fired", "shadow") and len(rule.examples) < EXAMPLES:
                rule.examples.append(patient)
            if outcome.status in ("error", "timeout") and len(rule.errors) < EXAMPLES:
                rule.errors.append(f"{patient} at {at.isoformat()}: {outcome.reason}")

    def over(self, max_rate: float) -> list[str]:
        """The services whose card rate is above `max_rate`."""
        return sorted(s for s, c in self.services.items() if c.rate > max_rate)

    def failing_rules(self) -> list[str]:
        return sorted(
            r for r, c in self.rules.items() if c.statuses.get("error") or c.statuses.get("timeout")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "patients": self.patients,
            "patientsWithoutEncounter": self.no_encounter,
            "services": {
                sid: {
                    "calls": c.calls,
                    "carded": c.carded,
                    "cardRate": round(c.rate, 4),
                    "unevaluated": c.unevaluated,
                }
                for sid, c in sorted(self.services.items())
            },
            "rules": {
                rid: {
                    "service": c.service,
                    "calls": c.calls,
                    "fireRate": round(c.rate, 4),
                    "statuses": dict(sorted(c.statuses.items())),
                    "examplePatients": c.examples,
                    "errors": c.errors,
                }
                for rid, c in sorted(self.rules.items())
            },
        }

    def table(self) -> str:
        lines = [
            f"{self.patients} patients, {self.hook} at each record's last encounter"
            + (
                f" ({self.no_encounter} without an encounter, not called)"
                if self.no_encounter
                else ""
            ),
            "",
            f"{'service':<32}{'calls':>7}{'carded':>8}{'rate':>8}",
        ]
        for sid, c in sorted(self.services.items()):
            lines.append(f"{sid:<32}{c.calls:>7}{c.carded:>8}{c.rate:>8.1%}")
        lines += ["", f"{'rule':<44}{'calls':>7}{'fired':>7}{'rate':>8}  other outcomes"]
        for rid, rule in sorted(self.rules.items(), key=lambda kv: (kv[1].service, kv[0])):
            fired = rule.statuses.get("fired", 0) + rule.statuses.get("shadow", 0)
            others = ", ".join(
                f"{k} {v}" for k, v in sorted(rule.statuses.items()) if k not in ("fired", "shadow")
            )
            lines.append(f"{rid:<44}{rule.calls:>7}{fired:>7}{rule.rate:>8.1%}  {others}")
            lines += [f"    error: {e}" for e in rule.errors]
        return "\n".join(lines) + "\n"

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"
