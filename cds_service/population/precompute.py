"""Warming the shared score cache for a population, on the population engine.

Every partition is scored by a Dask worker, one patient at a time (`read_partition`): each score
is computed from the patient's record as of `at`, exactly as a hook computes it
(`scores.provider.score_entry`), and written to Redis under the keys the hooks read (the
inputs' key and the patient's `latest`), in pipelined batches of `BATCH` commands without a
transaction. Redis failing mid-partition fails the partition (Dask retries it; the writes are
idempotent), and a partition that still fails fails the job: the command then exits non-zero,
never reporting a partial run as done (`--resume` keeps the partitions that finished).

Unreadable lines in the export leave their resource type unknown for every patient
(`export_gaps`): a score with an input of that type is not computable, and such a result is
never written (the patient's earlier latest result, if any, stays) but counted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import redis

from cds_service.population.engine import Cluster
from cds_service.population.jobs import Source, run_partition_job, shared_for_records
from cds_service.population.layout import Layout, read_layout
from cds_service.population.partition import read_partition
from cds_service.population.progress import Progress
from cds_service.scores.fhir_inputs import RECORD_TYPES, PatientRecord, load_failure
from cds_service.scores.provider import latest_key, score_entry

__all__ = ["BATCH", "PrecomputeOptions", "PrecomputeSummary", "precompute_partition", "run"]

BATCH = 1_000  # Redis commands per pipelined round trip
ERRORS_KEPT = 20


@dataclass(frozen=True, slots=True)
class PrecomputeOptions:
    redis_url: str
    scores: tuple[str, ...]
    at: datetime  # the record's date the scores are computed for
    computed_at: datetime  # the command's clock when it started: stamps every result
    tenant: str = "default"
    ttl_seconds: int = 86_400

    def describe(self) -> dict[str, Any]:
        return {
            "scores": list(self.scores),
            "at": self.at.isoformat(),
            "tenant": self.tenant,
            "redis": self.redis_url.rsplit("@", 1)[-1],  # never a password in a path
        }


@dataclass(slots=True)
class PrecomputeSummary:
    """What a run did (a partition's, or the merged whole)."""

    patients: int = 0
    resources: int = 0
    errors: int = 0
    by_score: dict[str, dict[str, int]] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)

    @property
    def computed(self) -> int:
        return sum(counts.get("computed", 0) for counts in self.by_score.values())

    @property
    def not_computable(self) -> int:
        return sum(counts.get("not_computable", 0) for counts in self.by_score.values())

    def count(self, score: str, outcome: str) -> None:
        counts = self.by_score.setdefault(score, {})
        counts[outcome] = counts.get(outcome, 0) + 1

    def merge(self, other: PrecomputeSummary) -> None:
        self.patients += other.patients
        self.resources += other.resources
        self.errors += other.errors
        for score, counts in other.by_score.items():
            mine = self.by_score.setdefault(score, {})
            for outcome, n in counts.items():
                mine[outcome] = mine.get(outcome, 0) + n
        self.first_errors = (self.first_errors + other.first_errors)[:ERRORS_KEPT]

    def to_json(self) -> dict[str, Any]:
        return {
            "patients": self.patients,
            "resources": self.resources,
            "errors": self.errors,
            "byScore": self.by_score,
            "firstErrors": self.first_errors,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PrecomputeSummary:
        return cls(
            int(data["patients"]),
            int(data["resources"]),
            int(data["errors"]),
            {k: dict(v) for k, v in data["byScore"].items()},
            list(data["firstErrors"]),
        )

    @property
    def unknown(self) -> int:
        return sum(counts.get("unknown", 0) for counts in self.by_score.values())

    def lines(self) -> list[str]:
        out = [
            f"patients: {self.patients}",
            f"resources read: {self.resources}",
            f"scores computed: {self.computed}",
            f"not computable: {self.not_computable}",
            f"not stored, data unknown: {self.unknown}",
            f"errors: {self.errors}",
        ]
        for name, counts in sorted(self.by_score.items()):
            unknown = counts.get("unknown", 0)
            out.append(
                f"  {name}: {counts.get('computed', 0)} computed, "
                f"{counts.get('not_computable', 0)} not computable"
                + (f", {unknown} not stored (data unknown)" if unknown else "")
            )
        return out


def precompute_partition(workdir: str, index: int, *, options: PrecomputeOptions) -> dict[str, Any]:
    """Score partition `index` into Redis; its summary (JSON)."""
    summary = PrecomputeSummary()
    client = redis.Redis.from_url(options.redis_url, socket_timeout=30, socket_connect_timeout=10)
    try:
        pipe = client.pipeline(transaction=False)
        shared = list(shared_for_records(workdir))
        layout = read_layout(workdir)
        summary.resources = layout.partitions[index].resources  # read or not, all were seen
        # Only the types the scores read are opened (Claims and EOBs are most of a record).
        records = read_partition(workdir, index, layout=layout, types=RECORD_TYPES)
        gaps = export_gaps(layout)
        for patient_id, resources in records:
            summary.patients += 1
            # One record for every score: grouped by type and indexed by code once.
            record = PatientRecord(resources + shared, options.at, gaps)
            for name in options.scores:
                try:
                    key, result = score_entry(
                        name,
                        record,
                        options.at,
                        options.computed_at,
                        tenant=options.tenant,
                        patient_id=patient_id,
                    )
                except Exception as exc:  # one patient's odd record must not stop the run
                    summary.errors += 1
                    if len(summary.first_errors) < ERRORS_KEPT:
                        summary.first_errors.append(
                            f"patient {patient_id}: {name} failed ({type(exc).__name__})"
                        )
                    continue
                if key is None:  # an input is unknown: never cached (the latest stays)
                    summary.count(name, "unknown")
                    if len(summary.first_errors) < ERRORS_KEPT:
                        summary.first_errors.append(f"patient {patient_id}: {result['reason']}")
                    continue
                value = orjson.dumps(result)
                pipe.set(key, value, ex=options.ttl_seconds)
                pipe.set(
                    latest_key(options.tenant, patient_id, name), value, ex=options.ttl_seconds
                )
                computable = result.get("value") is not None
                summary.count(name, "computed" if computable else "not_computable")
            if len(pipe) >= BATCH:
                pipe.execute()
        pipe.execute()
    finally:
        client.close()
    return summary.to_json()


_TYPE_IN_NAME = re.compile(r"^[A-Z][a-z]+(?:[A-Z][a-z]+)*$")


def export_gaps(layout: Layout) -> dict[str, str]:
    """What every patient's record cannot tell: the types the scores read that have unreadable
    lines in the export (a line that cannot be read may be anyone's). A file is taken to hold
    the type its name gives (`Condition.000.ndjson`, Bulk Data's naming); a malformed line of a
    file that names no type, or more malformed lines than the layout lists, makes every type
    unknown."""
    counts: dict[str, int] = {}
    for line in layout.malformed:
        name = line.split(":", 1)[0].rsplit("/", 1)[-1]
        named = [part for part in name.split(".") if _TYPE_IN_NAME.match(part)]
        for resource_type in named[:1] or sorted(RECORD_TYPES):
            counts[resource_type] = counts.get(resource_type, 0) + 1
    if layout.malformed_total > len(layout.malformed):
        for resource_type in RECORD_TYPES:
            counts[resource_type] = counts.get(resource_type, 0) + 1
    why = "the export has unreadable lines that may hold them: {} listed"
    return {
        resource_type: load_failure(resource_type, why.format(n), partial=True)
        for resource_type, n in sorted(counts.items())
        if resource_type in RECORD_TYPES
    }


def check_redis(url: str) -> None:
    """Raise ConnectionError when Redis does not answer (before any work is done)."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        why = type(exc).__name__
        raise ConnectionError(f"Redis at CDS_REDIS_URL does not answer ({why})") from exc
    finally:
        client.close()


def run(
    source: Source,
    options: PrecomputeOptions,
    *,
    cluster: Cluster,
    resume: bool = False,
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[PrecomputeSummary, Layout]:
    """Score the whole population into Redis; the merged summary and the layout read."""
    check_redis(options.redis_url)
    results, layout = run_partition_job(
        "precompute",
        source,
        options.describe(),
        functools.partial(precompute_partition, options=options),
        cluster=cluster,
        resume=resume,
        progress=progress,
        say=say,
    )
    summary = PrecomputeSummary()
    for index in sorted(results):
        summary.merge(PrecomputeSummary.from_json(results[index]))
    # What the partitions do not hold was read too: shared resources, unrouted, bad lines.
    summary.resources += layout.shared + layout.unrouted
    summary.errors += layout.malformed_total
    return summary, layout
