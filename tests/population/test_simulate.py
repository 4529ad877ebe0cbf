"""`cds-service rules simulate`: a Bulk Data export replayed as patient-view calls."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.cli import main
from cds_service.population.records import read_population
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


def test_simulate_reports_card_rates_per_service_and_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    status = main(["rules", "simulate", str(SYNTHEA_55), "--format", "json", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["patients"] == 55
    services = report["services"]
    assert set(services) == {"preventive-care"}  # the only patient-view service
    for counts in services.values():
        assert counts["calls"] + report["patientsWithoutEncounter"] == 55
        assert 0 <= counts["carded"] <= counts["calls"]
    rules = report["rules"]
    assert "statin-for-ascvd-risk" in rules
    for rule in rules.values():
        assert rule["statuses"].get("error", 0) == 0, rule["errors"]
        assert sum(rule["statuses"].values()) == rule["calls"]
        assert len(rule["examplePatients"]) <= 3
    # Without --fail-over a rate over the limit is reported, not an error exit.
    assert status == 0


def test_fail_over_exits_1_when_a_rate_is_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["rules", "simulate", str(SYNTHEA_55), "--max-card-rate", "0", "--fail-over"])
    captured = capsys.readouterr()
    assert status == 1
    assert "card rate" in captured.err and "is over 0%" in captured.err
    assert "55 patients, patient-view at each record's last encounter" in captured.out


def test_the_replay_gives_the_rules_the_replay_budget_not_the_production_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow moment of the machine must not turn into `timeout` outcomes (and a failed gate):
    the services of a replay get `REPLAY_BUDGET_SECONDS`, not the 1 s of a production call."""
    import cds_service.population.cli as cli
    from cds_service.population.replay import REPLAY_BUDGET_SECONDS
    from cds_service.rules.service import services_from_rules as real

    budgets: list[float] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        budgets.append(kwargs["budget_seconds"])
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "services_from_rules", spy)
    cli.simulate(SYNTHEA_55, builtins=False)
    assert budgets == [REPLAY_BUDGET_SECONDS]


def test_simulate_a_visit_hook_puts_the_last_encounter_in_context(tmp_path: Path) -> None:
    out = tmp_path / "visits.json"
    argv = ["rules", "simulate", str(SYNTHEA_55), "--hook", "encounter-start"]
    assert main([*argv, "--format", "json", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["hook"] == "encounter-start"
    assert {"allergy-documentation", "inpatient-safety", "preventive-care"} <= set(
        report["services"]
    )
    # The care-gap rules read the context encounter: had it been missing they would be skipped.
    pneumococcal = report["rules"]["pneumococcal-vaccine-due"]["statuses"]
    assert pneumococcal.get("fired", 0) > 0 and "skipped" not in pneumococcal


def test_simulate_refuses_a_hook_it_cannot_derive_a_context_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["rules", "simulate", str(SYNTHEA_55), "--hook", "order-sign"])
    assert "invalid choice: 'order-sign'" in capsys.readouterr().err
