"""One clock: an app created with a frozen clock records that time everywhere."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import cds_service
from cds_service.audit.store import AuditEntry, AuditStore
from cds_service.clock import frozen_clock, shift
from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from cds_service.scores import score_from_fhir
from cds_service.scores.provider import cache_key
from tests.conftest import FIXTURES

DARWIN = (
    FIXTURES / "fhir-r4" / "synthea" / "Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json"
)
FROZEN = datetime(2019, 10, 10, 23, 0, tzinfo=UTC)  # Darwin's last visit
PACKAGE = Path(cds_service.__file__).parent
# Reads of the wall clock outside cds_service/clock.py, with the reason each is allowed.
ALLOWED = {
    "bulk/auth.py": "a client assertion is signed at the real time for the remote server",
}


def test_a_frozen_clock_stamps_audit_rows_and_score_results(tmp_path: Path) -> None:
    server = FhirDouble.from_bundle(json.loads(DARWIN.read_text()))
    patient_id = server.resources("Patient")[0]["id"]
    database_url = f"sqlite:///{tmp_path}/cds.db"
    settings = Settings(database_url=database_url, builtin_services=False)
    app = create_app(
        settings, fhir_transport=httpx.MockTransport(server.handle), clock=frozen_clock(FROZEN)
    )
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": server.base_url,
        "context": {"userId": "Practitioner/1", "patientId": patient_id},
    }
    with TestClient(app) as client:
        response = client.post("/cds-services/preventive-care", json=body)
        cache = client.app.state.cds.score_cache  # type: ignore[attr-defined]
        key = cache_key("default", patient_id, "ascvd", "latest")
        latest = client.portal.call(cache.get, key)  # type: ignore[union-attr]
    assert response.status_code == 200, response.text
    assert latest is not None and latest["computed_at"] == "2019-10-10T23:00:00+00:00"

    async def rows() -> list[AuditEntry]:
        store = await AuditStore.open(database_url)
        try:
            return await store.query(since=None)
        finally:
            await store.close()

    written = asyncio.run(rows())
    assert [(row.kind, row.at) for row in written] == [("hook", FROZEN)]


def test_scores_are_stamped_with_the_time_they_are_computed_as_of() -> None:
    assert score_from_fhir("qsofa", [], FROZEN).computed_at == "2019-10-10T23:00:00+00:00"
    later = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = score_from_fhir("qsofa", [], FROZEN, computed_at=later)
    assert result.computed_at == "2026-01-02T03:04:05+00:00"


def test_only_the_clock_module_reads_the_wall_clock() -> None:
    reads = re.compile(r"datetime\.now\(|datetime\.utcnow|date\.today\(\)|time\.time\(\)")
    found = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if reads.search(path.read_text()) and path.name != "clock.py"
    }
    assert found == set(ALLOWED)


@pytest.mark.parametrize(
    ("amount", "unit", "expected"),
    [
        (6, "month", datetime(2026, 9, 30, 12, tzinfo=UTC)),  # 31 September does not exist
        (-1, "month", datetime(2026, 2, 28, 12, tzinfo=UTC)),
        (1, "year", datetime(2027, 3, 31, 12, tzinfo=UTC)),
        (-10, "year", datetime(2016, 3, 31, 12, tzinfo=UTC)),
        (2, "week", datetime(2026, 4, 14, 12, tzinfo=UTC)),
        (-90, "day", datetime(2025, 12, 31, 12, tzinfo=UTC)),
    ],
)
def test_shift_moves_by_calendar_units(amount: int, unit: str, expected: datetime) -> None:
    assert shift(datetime(2026, 3, 31, 12, tzinfo=UTC), amount, unit) == expected


def test_month_arithmetic_keeps_the_calendar() -> None:
    assert shift(datetime(2024, 2, 29, tzinfo=UTC), -1, "year") == datetime(2023, 2, 28, tzinfo=UTC)
    assert shift(datetime(2026, 1, 15, tzinfo=UTC), -13, "month") == datetime(
        2024, 12, 15, tzinfo=UTC
    )


def test_shift_refuses_an_unknown_unit() -> None:
    with pytest.raises(ValueError, match="fortnight"):
        shift(datetime(2026, 3, 31, tzinfo=UTC), 1, "fortnight")
