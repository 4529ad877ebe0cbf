"""Simulation reports: partitions' reports merge to the whole; JSON round trip; rendering."""

from __future__ import annotations

from pathlib import Path

from cds_service.population.render import html, table
from cds_service.population.report import (
    SCHEMA_FILE,
    Report,
    RuleCounts,
    ServiceCounts,
    SimulationReport,
    render_schema,
)

ROOT = Path(__file__).resolve().parents[2]


def partition(offset: int) -> Report:
    report = Report(hooks=("patient-view", "order-sign"), not_simulated={"order-dispatch": "x"})
    report.patients = 10
    report.no_calls = 1
    report.services[("preventive-care", "patient-view")] = ServiceCounts(9, 1 + offset, 0)
    report.services[("medication-safety", "order-sign")] = ServiceCounts(20, 2, 1)
    report.months[("2024-06", "preventive-care", "patient-view")] = ServiceCounts(9, 1 + offset)
    report.rules["statin"] = RuleCounts(
        "preventive-care",
        "patient-view",
        statuses={"fired": 1 + offset, "silent": 8 - offset},
        examples=[f"p{offset}"],
    )
    report.rules["bad"] = RuleCounts(
        "medication-safety", "order-sign", statuses={"error": 1}, errors=[f"p{offset}: boom"]
    )
    return report


def test_partitions_merge_to_the_population() -> None:
    whole = Report.from_json(partition(0).to_json())
    whole.merge(Report.from_json(partition(2).to_json()))
    assert (whole.patients, whole.no_calls, whole.calls) == (20, 2, 58)
    service = whole.services[("preventive-care", "patient-view")]
    assert (service.calls, service.carded) == (18, 4)
    assert whole.rules["statin"].statuses == {"fired": 4, "silent": 14}
    assert whole.rules["statin"].examples == ["p0", "p2"]
    assert whole.rules["bad"].errors == ["p0: boom", "p2: boom"]
    assert whole.failing_rules() == ["bad"]
    assert whole.over(0.15) == [("preventive-care", "patient-view")]  # 4 of 18: 22 %
    assert Report.from_json(whole.to_json()).to_json() == whole.to_json()


def test_the_json_is_the_committed_schema_and_renders() -> None:
    data = partition(0).to_json(max_rate=0.1)
    model = SimulationReport.model_validate(data)
    assert data["schema"] == "cds-simulation-report/1"
    assert [(r.service, r.hook, r.over_limit) for r in model.services] == [
        ("medication-safety", "order-sign", False),
        ("preventive-care", "patient-view", True),
    ]
    text = table(model)
    assert "preventive-care               patient-view" in text and "over" in text
    assert "    error: p0: boom" in text
    page = html(model, title="Pack <v2>")
    assert "<title>Pack &lt;v2&gt;</title>" in page
    assert 'aria-label="11.1%"' in page  # the card-rate bar of preventive-care (1 of 9)
    assert "order-dispatch" in page and "2024-06" in page


def test_the_committed_schema_is_current() -> None:
    committed = ROOT / "openapi" / SCHEMA_FILE
    assert committed.read_text(encoding="utf-8") == render_schema(), "run `make openapi`"
