"""Both population commands read a live `$export`: SMART Backend Services, the kick-off, the
status polling and the downloads against a FHIR server double (httpx.MockTransport, which
checks the signed client assertion and the bearer token), then the same job as from disk."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cds_service.cli import main
from cds_service.population import export_source
from tests.bulk.fakes import BASE, CLIENT_ID, FakeFhirServer, pem, rsa_key, signing_key
from tests.population.conftest import SYNTHEA_55

REDIS_URL = "redis://127.0.0.1:6379/13"
# This module flushes a Redis database of its own (`make pytest` keeps a module's tests on one
# worker).


def _served_files() -> dict[str, bytes]:
    """The Synthea export's files as the server hands them out (plain NDJSON)."""
    return {
        path.name.removesuffix(".gz"): gzip.decompress(path.read_bytes())
        for path in sorted(SYNTHEA_55.glob("*.ndjson.gz"))
    }


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeFhirServer]:
    fake = FakeFhirServer(signing_key("rsa"), files=_served_files())
    monkeypatch.setattr(export_source, "http_client", fake.client)
    yield fake


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "client.pem"
    path.write_bytes(pem(rsa_key()))
    return path


def _auth(key_file: Path) -> list[str]:
    return ["--client-id", CLIENT_ID, "--key", str(key_file), "--kid", "rsa-kid-1"]


def _report(argv: list[str], out: Path) -> dict[str, Any]:
    assert main([*argv, "--format", "json", "--out", str(out)]) == 0
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_simulate_from_a_fhir_server_equals_simulate_from_its_files(
    server: FakeFhirServer, key_file: Path, tmp_path: Path
) -> None:
    common = ["--workers", "1", "--partitions", "2", "--at", "2020-06-01"]
    live = _report(["rules", "simulate", BASE, *_auth(key_file), *common], tmp_path / "a.json")
    assert server.kick_off_params.get("_type") is None  # every type: the rules read many
    assert len(server.paths("GET")) > len(_served_files())  # status, manifest, every file
    on_disk = _report(["rules", "simulate", str(SYNTHEA_55), *common], tmp_path / "b.json")
    assert live["patients"] == on_disk["patients"] == 55
    assert live["services"] == on_disk["services"] and live["rules"] == on_disk["rules"]


def test_simulate_refuses_an_export_it_cannot_authorize(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "simulate", BASE]) == 2
    assert "a $export needs --client-id and --key" in capsys.readouterr().err
    missing = ["--client-id", CLIENT_ID, "--key", str(key_file.with_name("none.pem"))]
    assert main(["rules", "simulate", BASE, *missing]) == 2
    assert "none.pem is not a file" in capsys.readouterr().err


def test_simulate_reports_a_refused_token_by_its_reason(
    server: FakeFhirServer, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.token_error = (401, {"error": "invalid_client", "error_description": "unknown kid"})
    assert main(["rules", "simulate", BASE, *_auth(key_file), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "the $export failed" in err and "invalid_client" in err


def test_precompute_from_a_fhir_server_scores_every_patient(
    server: FakeFhirServer,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    monkeypatch.setenv("CDS_REDIS_URL", REDIS_URL)
    try:
        argv = ["precompute", "--fhir-base", BASE, *_auth(key_file), "--at", "2020-06-01"]
        assert main([*argv, "--workers", "1", "--partitions", "2"]) == 0
        out = capsys.readouterr().out
        assert "patients: 55" in out and "errors: 0" in out
        # Only the types the scores read were asked for, with scopes for them alone.
        asked = server.kick_off_params["_type"][0].split(",")
        assert "Patient" in asked and "Observation" in asked and "Claim" not in asked
        assert len(client.keys("cds:score:v1:default:*:latest")) == 55 * 6
    finally:
        client.flushdb()
        client.close()
