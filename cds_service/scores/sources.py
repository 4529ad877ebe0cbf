"""Where a call's risk scores come from: one interface for every evaluation path.

The evaluation pipeline (`cds_service.rules.pipeline`) asks a `ScoreSource` for the scores the
rules declare, always with the same record: every resource of the call, the hook's context
resources included (e.g. the new Condition of problem-list-item-create), as of the call's `now`.

- `CachedScores`: serving. Read through the score cache (Redis or in-process), keyed by the
  tenant, the patient and a fingerprint of the inputs; the patient's latest cached result is
  used when an input is unknown (the call could not obtain its data: `PatientRecord.gaps`).
- `ComputedScores`: rule tests, `rules explain`, benchmarks and population jobs. Computed from
  the record, nothing cached; a rule test may inject a score's result instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cds_service.scores import SCORES, compute_result
from cds_service.scores.fhir_inputs import PatientRecord
from cds_service.scores.provider import ScoreProvider

__all__ = ["CachedScores", "ComputedScores", "ScoreSource"]


class ScoreSource(Protocol):
    """Provides risk scores (as JSON objects with at least `value`) for one call."""

    async def scores(
        self,
        names: Sequence[str],
        record: PatientRecord,
        *,
        patient_id: str,
        tenant: str,
    ) -> dict[str, dict[str, Any]]:
        """The named scores for the patient's record (whose `gaps` say what failed to load)."""
        ...

    async def cached(self, names: Sequence[str], *, patient_id: str, tenant: str) -> bool:
        """True when every named score has a cached result for the patient, so the data only
        the scores read need not be fetched."""
        ...


class CachedScores:
    """Scores through the score cache (the serving path)."""

    def __init__(self, provider: ScoreProvider) -> None:
        self.provider = provider

    async def scores(
        self,
        names: Sequence[str],
        record: PatientRecord,
        *,
        patient_id: str,
        tenant: str,
    ) -> dict[str, dict[str, Any]]:
        return {
            name: await self.provider.score(
                name,
                record,
                record.at,
                patient_id=patient_id,
                tenant=tenant,
            )
            for name in names
        }

    async def cached(self, names: Sequence[str], *, patient_id: str, tenant: str) -> bool:
        return await self.provider.has_latest(names, patient_id=patient_id, tenant=tenant)


class ComputedScores:
    """Scores computed from the record, none cached, stamped as computed at the record's `now`;
    `injected` results replace computed ones by score name (a rule test's `scores:`)."""

    def __init__(self, injected: Mapping[str, Any] | None = None) -> None:
        self.injected = dict(injected or {})

    async def scores(
        self,
        names: Sequence[str],
        record: PatientRecord,
        *,
        patient_id: str,
        tenant: str,
    ) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            if name in self.injected:
                out[name] = self.injected[name]
            else:
                calculator = SCORES[name]
                inputs = calculator.inputs_from_fhir(record, record.at)
                result = compute_result(calculator, inputs, computed_at=record.at)
                out[name] = {**result.to_json(), "source": "computed"}
        return out

    async def cached(self, names: Sequence[str], *, patient_id: str, tenant: str) -> bool:
        return False
