"""The result type, the score protocol and a base class doing validation for every score.

A score is a pure `compute(inputs)` plus an adapter `inputs_from_fhir(resources, at)` that pulls
the inputs from one patient's FHIR R4 resources. `compute` never raises for bad input: missing,
unconvertible, implausible or out-of-range inputs, and contradictory records, give `value=None`
with the reason. Notes (e.g. an assumed default) go into `reason` while `value` is still set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from cds_service.scores.fhir_inputs import Unknown
from cds_service.scores.inputs import InputSpec, validate

if TYPE_CHECKING:
    from cds_service.scores.fhir_inputs import FhirData

__all__ = ["BaseScore", "FhirInputs", "RiskScore", "ScoreResult"]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """One computed (or not computable) score."""

    score: str
    value: float | None
    inputs: dict[str, Any]
    reason: str | None = None
    unit: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    computed_at: str | None = None
    # Where each input stands (`present`, `absent`, `unknown`; inputs from FHIR only) and, for
    # each unknown input, what failed to load. A result with unknown inputs is not computable.
    provenance: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        out = {
            "score": self.score,
            "value": self.value,
            "unit": self.unit,
            "inputs": dict(self.inputs),
            "reason": self.reason,
            "sources": dict(self.sources),
            "computed_at": self.computed_at,
        }
        if self.provenance:
            out["provenance"] = dict(self.provenance)
        if self.unknown:
            out["unknown"] = dict(self.unknown)
        return out


class FhirInputs(dict[str, Any]):
    """Inputs taken from FHIR, with `sources` (input key -> ``Type/id date``), `unknown` (input
    key -> what failed to load) and each input's `provenance` (present, absent or unknown)."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[str, str] = {}
        self.unknown: dict[str, str] = {}
        self.provenance: dict[str, str] = {}

    def put(self, key: str, found: tuple[Any, str | None] | None) -> None:
        """Set `key` from a (value, source) pair; None leaves the input absent; an `Unknown`
        value makes it unknown (not set)."""
        self.pop(key, None)
        self.sources.pop(key, None)
        self.unknown.pop(key, None)
        if found is None:
            self.provenance[key] = "absent"
            return
        value, source = found
        if isinstance(value, Unknown):
            self.unknown[key] = value.reason
            self.provenance[key] = "unknown"
            return
        self[key] = value
        # False without a source: searched and not found (a condition not recorded).
        self.provenance[key] = "absent" if value is False and not source else "present"
        if source:
            self.sources[key] = source


class RiskScore(Protocol):
    """What the registry, the CLI and the hooks rely on."""

    @property
    def name(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def unit(self) -> str | None: ...

    @property
    def value_range(self) -> tuple[float, float]: ...

    @property
    def input_help(self) -> dict[str, str]: ...

    @property
    def specs(self) -> tuple[InputSpec, ...]: ...

    def compute(self, inputs: Mapping[str, Any]) -> ScoreResult: ...

    def inputs_from_fhir(
        self, resources: FhirData, at: datetime, lookback_days: int = ...
    ) -> dict[str, Any]: ...


class BaseScore:
    """Validation against `specs`, then `check` (cross-input rules), then `calculate`."""

    name: str
    title: str
    unit: str | None = None
    value_range: tuple[float, float] = (0.0, 0.0)
    specs: tuple[InputSpec, ...] = ()

    @property
    def input_help(self) -> dict[str, str]:
        return {spec.key: spec.describe() for spec in self.specs}

    def compute(self, inputs: Mapping[str, Any]) -> ScoreResult:
        checked = validate(self.specs, inputs)
        problems = checked.problems or self.check(checked.values)
        if problems:
            return self._result(None, checked.shown, problems)
        value, notes = self.calculate(checked.values)
        return self._result(value, checked.shown, checked.notes + notes)

    def check(self, values: dict[str, Any]) -> list[str]:
        """Problems that involve several inputs (contradictions, applicability)."""
        return []

    def calculate(self, values: dict[str, Any]) -> tuple[float, list[str]]:
        """The score from validated canonical values, plus notes."""
        raise NotImplementedError

    def inputs_from_fhir(
        self, resources: FhirData, at: datetime, lookback_days: int = 365
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _result(self, value: float | None, shown: dict[str, Any], texts: list[str]) -> ScoreResult:
        reason = "; ".join(texts) if texts else None
        return ScoreResult(self.name, value, shown, reason, self.unit)
