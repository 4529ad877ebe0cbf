"""Scores for a hook call: read from the cache first, computed from the call's data otherwise.

Cache keys are `tenant + patient + score + fingerprint of the inputs`, so a changed lab result
makes a new key and never serves an old score. The latest result for each (tenant, patient, score)
is kept as well: when a call lacks the data to compute a score (the FHIR server was too slow, or
the EHR sent none: an input is unknown), the latest cached result (precomputed from a Bulk Data
export, or from an earlier call) is used, and says so (`source`, `computed_at`); without one the
score is "not computable" with what failed. A result with unknown inputs is never cached.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from cds_service.scores import SCORES, compute_result, unknown_of
from cds_service.scores.cache import ScoreCache
from cds_service.scores.fhir_inputs import OBSERVATION_SETS, FhirData, Unknown
from cds_service.terminology import value_set
from cds_service.types import Clock

log = logging.getLogger(__name__)

#: Why every input of a score is unknown when its readers could not read the record.
UNREADABLE = "the record holds FHIR data the score's readers could not read"

__all__ = [
    "SCORE_OBSERVATION_CODES",
    "SCORE_OBSERVATION_SETS",
    "SCORE_PREFETCH",
    "ScoreProvider",
    "cache_key",
    "fingerprint",
    "latest_key",
    "score_entry",
]

CACHE_VERSION = "v1"

# The Observation value sets the score adapters read (`PatientRecord` refuses any other).
SCORE_OBSERVATION_SETS = OBSERVATION_SETS
# Their codes, what the scores' prefetch asks for whatever category the EHR files them under
# (Synthea files smoking status under `survey`, US Core under `social-history`).
SCORE_OBSERVATION_CODES: frozenset[tuple[str, str]] = frozenset(
    pair for set_id in SCORE_OBSERVATION_SETS for pair in value_set(set_id).codes
)

# What the scores read, advertised as prefetch by every service whose rules use scores.
SCORE_PREFETCH: dict[str, str] = {
    "scorePatient": "Patient/{{context.patientId}}",
    "scoreObservations": "Observation?patient={{context.patientId}}&code="
    + ",".join(f"{system}|{code}" for system, code in sorted(SCORE_OBSERVATION_CODES)),
    "scoreConditions": "Condition?patient={{context.patientId}}",
    "scoreMedications": "MedicationRequest?patient={{context.patientId}}&status=active",
}


def fingerprint(score: str, inputs: dict[str, Any]) -> str:
    """A stable digest of a score's inputs (same inputs → same key, any change → new key)."""
    canonical = orjson.dumps(
        {"score": score, "inputs": inputs}, option=orjson.OPT_SORT_KEYS, default=str
    )
    return hashlib.sha256(canonical).hexdigest()[:32]


def cache_key(tenant: str, patient: str, score: str, suffix: str) -> str:
    return f"cds:score:{CACHE_VERSION}:{tenant}:{patient}:{score}:{suffix}"


def latest_key(tenant: str, patient: str, score: str) -> str:
    """The key of the patient's latest result of a score (computable or not)."""
    return cache_key(tenant, patient, score, "latest")


def _inputs(name: str, resources: FhirData, at: datetime) -> tuple[dict[str, Any], str]:
    """The score's inputs read from the record, and their fingerprint. A record the readers
    cannot read (FHIR-shaped JSON no reader expected) makes every input unknown, so the score
    is not computable on this call, as when its data failed to load: never a failed call."""
    try:
        inputs = SCORES[name].inputs_from_fhir(resources, at)
    except (TypeError, AttributeError, ValueError, KeyError, IndexError) as exc:
        # The exception's message may quote the record: only its type is logged.
        log.warning("score %s: the record could not be read (%s)", name, type(exc).__name__)
        inputs = {"record": Unknown(UNREADABLE)}
    return inputs, fingerprint(name, dict(inputs))


def score_entry(
    name: str,
    resources: FhirData,
    at: datetime,
    computed_at: datetime,
    *,
    tenant: str,
    patient_id: str,
) -> tuple[str | None, dict[str, Any]]:
    """A score computed from a record as a hook computes it, and the key it is cached under
    (precompute writes these in bulk); no key when an input is unknown (its data failed to
    load): such a result is never cached."""
    inputs, digest = _inputs(name, resources, at)
    result = compute_result(SCORES[name], inputs, computed_at)
    key = None if result.unknown else cache_key(tenant, patient_id, name, digest)
    return key, result.to_json()


class ScoreProvider:
    """Computes scores through the cache; `clock` stamps `computed_at`."""

    def __init__(self, cache: ScoreCache, *, clock: Clock) -> None:
        self.cache = cache
        self.clock = clock

    async def score(
        self,
        name: str,
        resources: FhirData,
        at: datetime,
        *,
        patient_id: str,
        tenant: str = "default",
    ) -> dict[str, Any]:
        """The score as JSON: `value`, `unit`, `inputs`, `reason`, `computed_at`, `source`.

        When an input the score needs is unknown (the call could not obtain its data: see
        `PatientRecord.gaps`), the patient's latest cached result is used and says so; without
        one the result is "not computable" with what failed. Such a result is never cached, and
        a cached result is never looked up by inputs some of which are unknown.
        """
        calculator = SCORES[name]
        inputs, digest = _inputs(name, resources, at)
        unknown = unknown_of(inputs)
        if unknown:
            # Asked of Redis even if it lately did not hold it: another replica may have since.
            latest = await self.cache.get(latest_key(tenant, patient_id, name), recheck_absent=True)
            if latest is not None:
                return {
                    **latest,
                    "source": "precomputed",
                    "note": f"computed from the record on {latest.get('computed_at')}; "
                    "this call could not obtain the data",
                }
            return {
                **compute_result(calculator, inputs, self.clock()).to_json(),
                "source": "computed",
            }
        key = cache_key(tenant, patient_id, name, digest)
        cached = await self.cache.get(key)
        if cached is not None:
            return {**cached, "source": "cache"}
        out = compute_result(calculator, inputs, self.clock()).to_json()
        await self.store(out, tenant=tenant, patient_id=patient_id, key=key)
        return {**out, "source": "computed"}

    async def has_latest(
        self, names: Sequence[str], *, patient_id: str, tenant: str = "default"
    ) -> bool:
        """True when every score has a cached latest result (computable or not) for the patient."""
        for name in names:
            if await self.cache.get(latest_key(tenant, patient_id, name)) is None:
                return False
        return True

    async def store(
        self, result: dict[str, Any], *, tenant: str, patient_id: str, key: str
    ) -> None:
        """Cache a computed result under its inputs' key and as the patient's latest."""
        await self.cache.set(key, result)
        await self.cache.set(latest_key(tenant, patient_id, result["score"]), result)
