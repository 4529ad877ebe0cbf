"""`cds-service precompute`: warms the cache the hooks read, reports bad lines, goes on."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from cds_service.cli import main
from cds_service.clock import frozen_clock
from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.population.records import read_population
from cds_service.scores import score_names
from cds_service.scores.cache import ScoreCache
from cds_service.scores.fhir_inputs import RECORD_TYPES, PatientRecord
from cds_service.scores.provider import ScoreProvider, score_entry
from tests.conftest import FIXTURES

REDIS_URL = "redis://127.0.0.1:6379/9"
# This module flushes a Redis database of its own (`make pytest` keeps a module's tests on one
# worker).
BULK = FIXTURES / "bulk-ndjson"
JESS = FIXTURES / "fhir-r4" / "synthea" / "Jess_Braun_eca04de4-760d-41bb-9735-36549acbf46c.json"
JESS_ID = "eca04de4-760d-41bb-9735-36549acbf46c"
AT = datetime(2024, 8, 6, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    monkeypatch.setenv("CDS_REDIS_URL", REDIS_URL)
    yield client
    client.flushdb()
    client.close()


def test_the_fixture_export(redis_env: redis.Redis, capsys: pytest.CaptureFixture[str]) -> None:
    """The real 10-patient export: every patient read and scored (it has no Observations, so
    lab-based scores are not computable, which the summary says)."""
    code = main(
        [
            "precompute",
            "--ndjson",
            str(BULK / "sample-bulk-fhir-datasets-10-patients"),
            "--at",
            "2024-08-06",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "patients: 13" in out.out and "resources read: 5945" in out.out
    assert "errors: 0" in out.out and "ascvd: 0 computed, 13 not computable" in out.out
    # Every patient's result is in the shared cache, and a call that lacks the data gets it.
    assert len(redis_env.keys("cds:score:v1:default:*:latest")) == 13 * 6
    patient_id = json.loads(
        (BULK / "sample-bulk-fhir-datasets-10-patients" / "Patient.000.ndjson")
        .read_text()
        .splitlines()[0]
    )["id"]

    async def served() -> dict[str, object]:
        cache = ScoreCache(redis_url=REDIS_URL)
        try:
            nothing_loaded = PatientRecord(
                [], AT, {"Patient": "The patient could not be loaded (ReadTimeout)"}
            )
            return await ScoreProvider(cache, clock=frozen_clock(AT)).score(
                "cha2ds2-vasc", nothing_loaded, AT, patient_id=patient_id
            )
        finally:
            await cache.close()

    result = asyncio.run(served())
    assert result["source"] == "precomputed" and "atrial fibrillation" in str(result["reason"])


def test_bad_lines_are_reported_and_skipped(
    redis_env: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["precompute", "--ndjson", str(BULK / "bulk-data-tools-mocks" / "bad-ndjson")])
    out = capsys.readouterr()
    assert code == 0
    assert "sample.2.ndjson:" in out.err  # the intentionally malformed file, with its line
    assert "errors: " in out.out and "errors: 0" not in out.out


def test_needs_redis(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CDS_REDIS_URL", raising=False)
    assert main(["precompute", "--ndjson", str(BULK)]) == 2
    assert "CDS_REDIS_URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ndjson", "/no/such/dir"], "not a directory"),
        (["--ndjson", ".", "--scores", "frailty"], "unknown frailty"),
        (["--ndjson", ".", "--at", "soon"], "not a date"),
        (["--fhir-base", "https://ehr.example.org/fhir"], "--client-id"),
    ],
)
def test_bad_arguments(
    redis_env: redis.Redis, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["precompute", *args]) == 2
    assert message in capsys.readouterr().err


RULE = """\
schema: cds-rule/1
id: show-score
version: 1
status: active
hook: patient-view
service: scores
title: Shows the CHA2DS2-VASc score and where it came from
description: Test rule.
references: [https://example.org]
prefetch:
  patient: Patient/{{context.patientId}}
scores: [cha2ds2-vasc]
let:
  value: "%scores.cha2ds2_vasc.value"
  source: "%scores.cha2ds2_vasc.source"
when: {id: has-score, fhirpath: "%value.exists()"}
card:
  summary: "CHA2DS2-VASc {{value}} ({{source}})"
  indicator: info
  source: {label: test}
"""


def test_a_hook_call_is_served_from_the_precomputed_cache(
    redis_env: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A one-patient export, written from a real Synthea record.
    export = tmp_path / "export"
    export.mkdir()
    resources = [e["resource"] for e in json.loads(JESS.read_text())["entry"]]
    by_type: dict[str, list[str]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    for resource_type, lines in by_type.items():
        (export / f"{resource_type}.000.ndjson").write_text("\n".join(lines) + "\n")
    assert (
        main(
            [
                "precompute",
                "--ndjson",
                str(export),
                "--scores",
                "cha2ds2-vasc",
                "--at",
                "2020-03-29",
            ]
        )
        == 0
    )
    assert "cha2ds2-vasc: 1 computed" in capsys.readouterr().out

    rules = tmp_path / "rules"
    (rules / "patient-view").mkdir(parents=True)
    (rules / "_services.yaml").write_text(
        "schema: cds-services/1\nservices:\n  scores: {title: Scores, description: Test}\n"
    )
    (rules / "patient-view" / "show-score.yaml").write_text(RULE)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/f.db",
        rules_dir=rules,
        builtin_services=False,
        redis_url=REDIS_URL,
    )
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {"userId": "Practitioner/1", "patientId": JESS_ID},
        "prefetch": {"patient": patient},
    }  # no conditions: the score cannot be computed from what the EHR sent
    fetched: list[str] = []

    def fhir(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(503)

    now = datetime(2020, 3, 29, 23, 0, tzinfo=UTC)
    app = create_app(settings, clock=lambda: now, fhir_transport=httpx.MockTransport(fhir))
    with TestClient(app) as client:
        response = client.post("/cds-services/scores", json=body)
        stats = client.app.state.cds.score_cache.stats  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["summary"].endswith("(precomputed)"), card["summary"]
    assert stats.redis_hits >= 1
    assert fetched == []  # the score was cached, so the data it reads was not fetched


def test_redis_down_is_a_clear_failure_never_a_partial_success(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    code = main(["precompute", "--ndjson", str(BULK / "synthea-55-patients"), "--workers", "1"])
    out = capsys.readouterr()
    assert code == 1
    assert "Redis at CDS_REDIS_URL does not answer" in out.err
    assert "patients:" not in out.out  # no summary: nothing was reported as done


def test_the_population_is_scored_on_the_engine_and_resumes(
    redis_env: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = str(tmp_path / "work")
    argv = ["precompute", "--ndjson", str(BULK / "synthea-55-patients"), "--at", "2020-06-01"]
    argv += ["--workers", "2", "--partitions", "4", "--workdir", work]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "patients: 55" in first.out and "errors: 0" in first.out
    latest = redis_env.keys("cds:score:v1:default:*:latest")
    assert len(latest) == 55 * 6  # every patient, every score, where the hooks read it
    redis_env.flushdb()
    assert main([*argv, "--resume"]) == 0  # finished partitions are not scored again
    again = capsys.readouterr()
    assert "4 of 4 partitions already done" in again.err and again.out == first.out
    assert redis_env.keys("cds:score:v1:default:*:latest") == []


def test_reading_only_the_scores_types_changes_no_result(
    redis_env: redis.Redis, tmp_path: Path
) -> None:
    """Precompute opens only RECORD_TYPES of each partition; every score of every Synthea
    patient must be what a hook computes from the whole record (keys carry the inputs' digest,
    so equal keys mean equal inputs)."""
    argv = ["precompute", "--ndjson", str(BULK / "synthea-55-patients"), "--at", "2020-06-01"]
    assert main([*argv, "--workers", "1", "--partitions", "2"]) == 0
    keys = [k.decode() if isinstance(k, bytes) else k for k in redis_env.keys("cds:score:v1:*")]
    stored = {
        key: json.loads(redis_env.get(key) or b"null")
        for key in keys
        if not key.endswith(":latest")
    }
    population = read_population(BULK / "synthea-55-patients")
    at = datetime(2020, 6, 1, tzinfo=UTC)
    expected: dict[str, Any] = {}
    for patient_id, resources in population.records.items():
        assert {r["resourceType"] for r in resources} - RECORD_TYPES  # the whole record
        record = PatientRecord(resources + population.shared, at)
        for name in score_names():
            key, result = score_entry(name, record, at, at, tenant="default", patient_id=patient_id)
            assert key is not None  # the whole record loaded: nothing unknown
            expected[key] = result
    assert sorted(stored) == sorted(expected)
    for key, result in expected.items():
        assert stored[key]["value"] == result["value"], key


def test_an_unreadable_line_leaves_its_type_unknown(
    tmp_path: Path, redis_env: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Condition line that cannot be read may be anyone's atrial fibrillation: no score that
    reads conditions is stored for anyone (counted and said), and scores that read none
    (eGFR: the patient and creatinine) are stored as usual."""
    source = BULK / "sample-bulk-fhir-datasets-10-patients"
    export = tmp_path / "export"
    export.mkdir()
    for path in source.glob("*.ndjson"):
        (export / path.name).write_bytes(path.read_bytes())
    with (export / "Condition.000.ndjson").open("a") as conditions:
        conditions.write('{"resourceType": "Condition", "id": "cut-off", "subject": {"refer\n')
    code = main(["precompute", "--ndjson", str(export), "--at", "2024-08-06"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "not stored, data unknown: " in out.out and "data unknown: 0" not in out.out
    assert "cha2ds2-vasc: 0 computed, 0 not computable, 13 not stored (data unknown)" in out.out
    latest = redis_env.keys("cds:score:v1:default:*:latest")
    keys = {k.decode() if isinstance(k, bytes) else k for k in latest}
    assert not any(":cha2ds2-vasc:" in k or ":has-bled:" in k for k in keys)
    assert sum(":egfr:" in k for k in keys) == 13  # reads no conditions: stored
