"""Clinical risk scores: pure calculators with FHIR R4 adapters, and their registry.

Names: ``ascvd`` (percent), ``cha2ds2-vasc``, ``has-bled``, ``ada-diabetes-risk``, ``qsofa``
(points) and ``egfr`` (mL/min/1.73 m2). Each module cites its source.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from cds_service.plugins import SCORES as PLUGIN_SCORES
from cds_service.plugins import Plugin, PluginError, plugins
from cds_service.scores.base import FhirInputs, RiskScore, ScoreResult
from cds_service.scores.fhir_inputs import FhirData, Unknown

__all__ = [
    "SCORES",
    "RiskScore",
    "ScoreResult",
    "build_scores",
    "compute_result",
    "iso_seconds",
    "score_from_fhir",
    "score_names",
]


def build_scores() -> dict[str, RiskScore]:
    """One instance of every score, by name."""
    from cds_service.scores.ada_diabetes_risk import AdaDiabetesRisk
    from cds_service.scores.ascvd import Ascvd
    from cds_service.scores.cha2ds2_vasc import Cha2ds2Vasc
    from cds_service.scores.egfr import Egfr
    from cds_service.scores.has_bled import HasBled
    from cds_service.scores.qsofa import Qsofa

    scores: list[RiskScore] = [
        Ascvd(),
        Cha2ds2Vasc(),
        HasBled(),
        AdaDiabetesRisk(),
        Qsofa(),
        Egfr(),
    ]
    found = {score.name: score for score in scores}
    for plugin in plugins(PLUGIN_SCORES):
        score = _plugin_score(plugin)
        if score.name in found:
            raise PluginError(
                f"{plugin.describe(PLUGIN_SCORES)}: the name '{score.name}' is already a score"
            )
        found[score.name] = score
    return found


_SCORE_MEMBERS = ("name", "title", "unit", "specs", "compute", "inputs_from_fhir")


def _plugin_score(plugin: Plugin) -> RiskScore:
    """A plugin's score: its class instantiated (or the instance), checked for the members the
    registry, the rules and precompute use, and named as its entry point."""
    value = plugin.value
    try:
        score = value() if isinstance(value, type) else value
    except Exception as exc:
        raise PluginError(
            f"{plugin.describe(PLUGIN_SCORES)}: cannot be created ({type(exc).__name__}: {exc})"
        ) from exc
    missing = [member for member in _SCORE_MEMBERS if not hasattr(score, member)]
    if missing:
        raise PluginError(
            f"{plugin.describe(PLUGIN_SCORES)}: not a risk score (no {', '.join(missing)})"
        )
    if score.name != plugin.name:
        raise PluginError(
            f"{plugin.describe(PLUGIN_SCORES)}: its name is '{score.name}'; the entry point "
            "must be named the same"
        )
    return score  # type: ignore[no-any-return]


SCORES: dict[str, RiskScore] = build_scores()


def score_names() -> list[str]:
    """The registered score names, in registry order."""
    return list(SCORES)


def sources_of(inputs: dict[str, Any]) -> dict[str, str]:
    """Where each FHIR-derived input came from (empty for plain dicts)."""
    return dict(inputs.sources) if isinstance(inputs, FhirInputs) else {}


def iso_seconds(moment: datetime) -> str:
    """`moment` as an ISO 8601 date-time to the second (`computed_at`)."""
    return moment.isoformat(timespec="seconds")


def unknown_of(inputs: dict[str, Any]) -> dict[str, str]:
    """The inputs that are unknown (their data failed to load), with what failed."""
    found = dict(inputs.unknown) if isinstance(inputs, FhirInputs) else {}
    # A plugin's adapter may hand an Unknown on as a plain value.
    found.update({k: v.reason for k, v in inputs.items() if isinstance(v, Unknown)})
    return found


def compute_result(score: RiskScore, inputs: dict[str, Any], computed_at: datetime) -> ScoreResult:
    """The score computed from `inputs`, stamped with their sources, provenance and
    `computed_at` (the caller's clock: no score reads the wall clock).

    An input that is unknown (its data failed to load) makes the score not computable, with what
    failed: "not computable: Conditions could not be loaded (ReadTimeout)", even one only
    checked for plausibility (an HbA1c): a score is never computed as if what failed to load
    were absent, nor given where the whole record would have made it not computable."""
    unknown = unknown_of(inputs)
    known = {k: v for k, v in inputs.items() if not isinstance(v, Unknown)}
    result = replace(
        score.compute(known),
        sources=sources_of(inputs),
        computed_at=iso_seconds(computed_at),
        provenance=dict(inputs.provenance) if isinstance(inputs, FhirInputs) else {},
        unknown=unknown,
    )
    if unknown:
        why = "; ".join(dict.fromkeys(unknown.values()))
        reason = f"not computable: {why}"  # which inputs: `unknown`
        shown = {k: v for k, v in result.inputs.items() if k not in unknown}  # no defaults
        return replace(result, value=None, reason=reason, inputs=shown)
    return result


def score_from_fhir(
    name: str,
    resources: FhirData,
    at: datetime,
    *,
    computed_at: datetime | None = None,
) -> ScoreResult:
    """Score `name` for one patient's resources as of `at`, stamped `computed_at` (default
    `at`: a call computes as of its own time); KeyError for an unknown name."""
    score = SCORES[name]
    return compute_result(score, score.inputs_from_fhir(resources, at), computed_at or at)
