"""A live Bulk Data `$export` downloaded into a directory, then partitioned like any export;
the writer of such directories."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import httpx
import pytest

from cds_service.bulk.auth import TokenSource
from cds_service.bulk.ndjson import NdjsonProblem, NdjsonResource
from cds_service.population.partition import partition, read_partition
from cds_service.population.sources import export_to_directory, ndjson_source
from cds_service.population.writer import TypedNdjsonWriter
from tests.bulk.fakes import (
    BASE,
    CLIENT_ID,
    MOCKS,
    SAMPLE_10,
    SCOPE,
    FakeFhirServer,
    fixture_lines,
    outcome,
    signing_key,
)

PATIENTS = b"".join(fixture_lines(SAMPLE_10 / "Patient.000.ndjson"))
CONDITIONS = b"".join(fixture_lines(SAMPLE_10 / "Condition.000.ndjson"))
BAD_LINE = fixture_lines(MOCKS / "bad-ndjson" / "sample.2.ndjson")[1]


def test_an_export_is_downloaded_then_read_as_an_ndjson_directory(tmp_path: Path) -> None:
    errors = httpx.Response(200, json=outcome("Patient 9 could not be exported")).content + b"\n"
    server = FakeFhirServer(
        signing_key(),
        files={"Patient.000.ndjson": PATIENTS + BAD_LINE, "Condition.000.ndjson": CONDITIONS},
        errors={"errors.ndjson": errors},
    )

    async def run() -> list[NdjsonProblem]:
        async with server.client() as client:
            token = TokenSource(
                client, client_id=CLIENT_ID, key=signing_key(), scope=SCOPE, fhir_base=BASE
            )
            return await export_to_directory(
                client, BASE, tmp_path / "export", types=["Patient", "Condition"], token=token
            )

    problems = asyncio.run(run())
    assert [p.kind for p in problems] == ["line", "outcome"]
    assert problems[0].source == f"{BASE}/files/Patient.000.ndjson"
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    counts = {entry["url"]: entry["count"] for entry in manifest["output"]}
    assert counts == {
        "Condition.000.ndjson.gz": CONDITIONS.count(b"\n"),
        "Patient.000.ndjson.gz": PATIENTS.count(b"\n"),
    }
    layout = partition(tmp_path / "export", tmp_path / "work", 2)
    assert layout.patients == PATIENTS.count(b"\n") and layout.malformed_total == 0
    conditions = sum(
        1
        for index in range(2)
        for _, resources in read_partition(tmp_path / "work", index)
        for r in resources
        if r["resourceType"] == "Condition"
    )
    assert conditions + layout.unrouted == CONDITIONS.count(b"\n")


def test_the_writer_rolls_files_over_and_refuses_a_type_that_is_no_file_name(
    tmp_path: Path,
) -> None:
    with TypedNdjsonWriter(tmp_path, max_lines=2) as writer:
        for number in range(5):
            writer.write("Patient", b'{"resourceType":"Patient","id":"%d"}' % number)
        with pytest.raises(ValueError, match="is not a FHIR resource type"):
            writer.write("../Patient", b"{}")
        writer.write_manifest(request="test", transaction_time="2026-01-01T00:00:00Z")
    assert [(f.name, f.count) for f in writer.files] == [
        ("Patient.000.ndjson.gz", 2),
        ("Patient.001.ndjson.gz", 2),
        ("Patient.002.ndjson.gz", 1),
    ]
    items = list(ndjson_source(tmp_path))
    assert [i.resource["id"] for i in items if isinstance(i, NdjsonResource)] == list("01234")
    assert gzip.decompress((tmp_path / "Patient.002.ndjson.gz").read_bytes()).endswith(b"}\n")
