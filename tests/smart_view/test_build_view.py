"""The view built from a real Synthea record: the trends agree with the scores."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cds_service.smart.data import EGFR_COMPUTED, PatientData, build_view
from cds_service.wire.fhir import bundle_resources
from tests.conftest import FIXTURES

DARWIN = (
    FIXTURES / "fhir-r4" / "synthea" / "Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json"
)
VISIT = datetime(2019, 10, 10, 23, 0, 0, 123456, tzinfo=UTC)


def test_the_egfr_trend_is_computed_from_creatinine_when_the_lab_reports_none() -> None:
    resources = bundle_resources(json.loads(DARWIN.read_text()))
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    assert not any(
        "33914-3" in json.dumps(r.get("code")) for r in resources
    )  # no reported eGFR in this record
    view = build_view(
        PatientData(patient, resources, []),
        now=VISIT,
        need_banner=False,
        context=None,
        style_url=None,
        logout_url="/logout",
        relaunch_url=None,
    )
    [egfr] = [s for s in view.series if s.key == "egfr"]
    assert egfr.title == EGFR_COMPUTED and len(egfr.points) >= 2
    assert all(p.source and p.source.endswith(", computed") for p in egfr.points)
    latest = max(egfr.points, key=lambda p: p.when)
    [score] = [s for s in view.scores if s.name == "egfr"]
    assert score.value is not None and round(latest.value, 1) == round(score.value, 1)
    assert not any("eGFR" in m for m in view.missing)
