"""`cds-service rules simulate`: a Bulk Data export simulated through the services on Dask."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.cli import main
from cds_service.population.records import read_population
from cds_service.population.report import SimulationReport
from tests.conftest import FIXTURES

SYNTHEA_55 = FIXTURES / "bulk-ndjson" / "synthea-55-patients"


def _write(path: Path, resources: list[Any], *, gz: bool = False) -> None:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in resources)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def test_resources_are_routed_to_their_patient(tmp_path: Path) -> None:
    _write(tmp_path / "Patient.000.ndjson", [{"resourceType": "Patient", "id": "p1"}])
    _write(
        tmp_path / "Encounter.000.ndjson.gz",
        [{"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p1"}}],
        gz=True,
    )
    _write(
        tmp_path / "Observation.000.ndjson",
        [
            {"resourceType": "Observation", "id": "o1", "subject": {"reference": "urn:uuid:p1"}},
            {"resourceType": "Observation", "id": "o2", "encounter": {"reference": "Encounter/e1"}},
            {"resourceType": "Observation", "id": "o3"},
            "{not json",
            '["not a resource"]',
        ],
    )
    _write(tmp_path / "Organization.000.ndjson", [{"resourceType": "Organization", "id": "org"}])
    population = read_population(tmp_path)
    assert [r["id"] for r in population.records["p1"]] == ["p1", "e1", "o1", "o2"]
    assert population.unrouted == 1  # o3 names no patient nor encounter
    assert [r["id"] for r in population.shared] == ["org"]
    # The bulk reader's reasons (cds_service/bulk/ndjson.py), each with the file and line.
    assert [m.split(": ", 1)[1] for m in population.malformed] == [
        "invalid JSON (unexpected character, expected a string key: line 1 column 2 (char 1))",
        "not a JSON object but an array",
    ]
    assert population.malformed[0].startswith(f"{tmp_path / 'Observation.000.ndjson'}:4:")


def test_an_export_without_ndjson_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "simulate", str(tmp_path)]) == 2
    assert "no .ndjson or .ndjson.gz files" in capsys.readouterr().err


def _simulate_json(tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "report.json"
    argv = ["rules", "simulate", str(SYNTHEA_55), "--workers", "2", "--partitions", "4"]
    status = main([*argv, *extra, "--format", "json", "--out", str(out)])
    report: dict[str, Any] = json.loads(out.read_text())
    SimulationReport.model_validate(report)  # the committed schema's model
    return status, report


def test_simulate_reports_card_rates_per_service_and_hook_and_rule(tmp_path: Path) -> None:
    status, report = _simulate_json(tmp_path)
    assert report["patients"] == 55 and report["hooks"] == ["patient-view"]
    assert [(s["service"], s["hook"]) for s in report["services"]] == [
        ("preventive-care", "patient-view")  # the only patient-view service
    ]
    [service] = report["services"]
    assert service["calls"] + report["patientsWithoutCalls"] == 55
    assert 0 <= service["carded"] <= service["calls"]
    rules = {rule["rule"]: rule for rule in report["rules"]}
    assert "statin-for-ascvd-risk" in rules
    for rule in rules.values():
        assert rule["statuses"].get("error", 0) == 0, rule["errors"]
        assert sum(rule["statuses"].values()) == rule["calls"] == service["calls"]
        assert len(rule["examplePatients"]) <= 3
    assert sum(m["calls"] for m in report["months"]) == service["calls"]
    assert status == 0  # without --fail-over a rate over the limit is reported, not an exit


def test_fail_over_exits_1_when_a_rate_is_over(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["rules", "simulate", str(SYNTHEA_55), "--workers", "1", "--partitions", "2"]
    status = main([*argv, "--max-card-rate", "0", "--fail-over"])
    captured = capsys.readouterr()
    assert status == 1
    assert "preventive-care (patient-view): card rate" in captured.err
    assert "is over 0%" in captured.err
    assert "55 patients" in captured.out


def test_the_services_get_the_simulation_budget_not_the_production_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow moment of the machine must not turn into `timeout` outcomes (and a failed gate):
    the services of a simulation get `REPLAY_BUDGET_SECONDS`, not the 1 s of a production call."""
    import cds_service.population.simulate as simulate
    from cds_service.config import default_rules_dir
    from cds_service.rules.service import services_from_rules as real

    budgets: list[float] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        budgets.append(kwargs["budget_seconds"])
        return real(*args, **kwargs)

    monkeypatch.setattr(simulate, "services_from_rules", spy)
    simulate.services_for.cache_clear()
    try:
        simulate.services_for(str(default_rules_dir()), False)
    finally:
        simulate.services_for.cache_clear()
    assert budgets == [simulate.REPLAY_BUDGET_SECONDS]


def test_simulate_a_visit_hook_puts_the_last_encounter_in_context(tmp_path: Path) -> None:
    _, report = _simulate_json(tmp_path, "--hooks", "encounter-start")
    assert report["hooks"] == ["encounter-start"]
    services = {s["service"] for s in report["services"]}
    assert {"allergy-documentation", "inpatient-safety", "preventive-care"} <= services
    # The care-gap rules read the context encounter: had it been missing they would be skipped.
    rules = {rule["rule"]: rule for rule in report["rules"]}
    pneumococcal = rules["pneumococcal-vaccine-due"]["statuses"]
    assert pneumococcal.get("fired", 0) > 0 and "skipped" not in pneumococcal


def test_a_window_simulates_every_call_of_the_history(tmp_path: Path) -> None:
    """Six months of history: visits, admissions, orders, discharges, each on the record as it
    stood then; no rule errs on any of them."""
    _, report = _simulate_json(tmp_path, "--from", "2019-06-01", "--to", "2019-11-30")
    hooks = {s["hook"] for s in report["services"]}
    assert {"patient-view", "encounter-start", "order-select", "order-sign"} <= hooks
    assert "order-dispatch" in report["notSimulated"]
    assert {m["month"] for m in report["months"]} <= {f"2019-{m:02d}" for m in range(6, 12)}
    for rule in report["rules"]:
        assert rule["statuses"].get("error", 0) == 0, (rule["rule"], rule["errors"])


def test_resume_reuses_the_partitions_and_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = str(tmp_path / "work")
    _, first = _simulate_json(tmp_path, "--workdir", work)
    capsys.readouterr()
    _, again = _simulate_json(tmp_path, "--workdir", work, "--resume")
    err = capsys.readouterr().err
    assert "reusing the 4 partitions" in err and "4 of 4 partitions already done" in err
    assert again == first
    # Partitions another release wrote are not trusted: partitioned again, same report.
    layout = tmp_path / "work" / "layout.json"
    layout.write_text(layout.read_text().replace('"version": 2', '"version": 1'))
    _, third = _simulate_json(tmp_path, "--workdir", work, "--resume")
    assert "partitioning" in capsys.readouterr().err
    assert third == first


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hooks", "order-dispatch"], "unknown hook order-dispatch"),
        (["--at", "yesterday"], "'yesterday' is not a date"),
    ],
)
def test_bad_options_are_refused_by_name(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["rules", "simulate", str(SYNTHEA_55), *argv])
    assert message in capsys.readouterr().err


def test_options_that_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "simulate", str(SYNTHEA_55), "--from", "2019-01-01"]) == 2
    assert "--from and --to go together" in capsys.readouterr().err
    assert main(["rules", "simulate", str(SYNTHEA_55), "--resume"]) == 2
    assert "--resume needs the --workdir" in capsys.readouterr().err


def test_an_unreadable_partition_fails_the_job_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    _simulate_json(tmp_path, "--workdir", str(work))
    (work / "part-00002" / "Observation.ndjson.gz").write_bytes(b"not gzip at all")
    for stale in (work / "results").glob("*/part-00002.json"):
        stale.unlink()
    capsys.readouterr()
    argv = ["rules", "simulate", str(SYNTHEA_55), "--workers", "1", "--partitions", "4"]
    assert main([*argv, "--workdir", str(work), "--resume"]) == 2
    err = capsys.readouterr().err
    assert (
        "partition 2 failed after 3 attempts" in err
        and "part-00002/Observation.ndjson.gz: unreadable" in err
    )
