"""`cds-service score ...` through a small parser built the way the main CLI will wire it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.scores import cli as score_cli
from tests.scores.helpers import FIXTURES, bundle_resources, synthea_file

DARWIN = synthea_file("Darwin")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="cds-service")
    commands = root.add_subparsers(dest="command", required=True)
    score_cli.add_parser(commands)
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = score_cli.run(parser().parse_args(["score", *argv]))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else None), err


def test_key_value_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    code, body, err = run(capsys, "egfr", "age=50", "sex=female", "creatinine=88.4 umol/L")
    assert code == 0 and err == ""
    assert body["score"] == "egfr"
    assert body["value"] == pytest.approx(68.6, abs=0.05)
    assert body["inputs"] == {"age": 50.0, "sex": "female", "creatinine": 1.0}
    assert body["reason"] is None
    assert body["unit"] == "mL/min/{1.73_m2}"
    assert body["sources"] == {}


def test_not_computable_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, body, _ = run(capsys, "ascvd", "age=85", "sex=male")
    assert code == 0
    assert body["value"] is None
    assert "outside the validated range" in body["reason"]


def test_patient_bundle_with_at(capsys: pytest.CaptureFixture[str]) -> None:
    code, body, _ = run(capsys, "ascvd", "--patient", str(DARWIN), "--at", "2019-10-10")
    assert code == 0
    assert body["value"] == pytest.approx(15.45, abs=0.01)
    assert body["inputs"]["age"] == 67
    assert body["reason"] == "race not recorded: computed with the white/other equations"
    assert body["sources"]["age"] == "Patient/429f802a-51cc-48c3-85d4-1a72bb718fc2 1951-11-08"


def test_at_changes_age_and_window(capsys: pytest.CaptureFixture[str]) -> None:
    _, before, _ = run(capsys, "ascvd", "--patient", str(DARWIN), "--at", "2019-11-07")
    _, after, _ = run(capsys, "ascvd", "--patient", str(DARWIN), "--at", "2019-11-08")
    assert (before["inputs"]["age"], after["inputs"]["age"]) == (67, 68)
    _, short, _ = run(
        capsys, "ascvd", "--patient", str(DARWIN), "--at", "2019-10-10", "--lookback-days", "30"
    )
    assert short["value"] is None
    assert short["reason"] == "missing input(s): total_cholesterol, hdl"


def test_key_value_overrides_the_record(capsys: pytest.CaptureFixture[str]) -> None:
    code, body, _ = run(
        capsys, "ascvd", "--patient", str(DARWIN), "--at", "2019-10-10", "race=african-american"
    )
    assert code == 0
    assert body["inputs"]["race"] == "african-american"
    assert body["reason"] is None
    assert "race" not in body["sources"]


def test_ndjson_patient(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.dumps(r) for r in bundle_resources(DARWIN)]
    ndjson = tmp_path / "darwin.ndjson"
    ndjson.write_text("\n".join(lines[:10]) + "\n\n   \n" + "\n".join(lines[10:]) + "\n")
    code, body, _ = run(capsys, "ascvd", "--patient", str(ndjson), "--at", "2019-10-10")
    assert code == 0
    assert body["value"] == pytest.approx(15.45, abs=0.01)


def test_help_lists_input_keys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["score", "ascvd", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for key in ("total_cholesterol", "hdl", "sbp", "bp_treated", "smoker", "diabetes", "race"):
        assert f"  {key}: " in text
    assert "validated range 130-320" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["egfr", "weight=80"], "unknown input key 'weight' for egfr"),
        (["egfr", "age"], "malformed input 'age': expected key=value"),
        (["egfr", "=5"], "malformed input '=5'"),
        (["egfr", "age="], "malformed input 'age='"),
        (["egfr", "age=50", "age=51"], "input key 'age' given twice"),
        (["egfr", "--at", "yesterday"], "invalid --at 'yesterday'"),
        (["egfr", "--patient", "/no/such/file.json"], "cannot read /no/such/file.json"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, body, err = run(capsys, *argv)
    assert code == 2
    assert body is None
    assert message in err


def test_bad_ndjson_line_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"resourceType": "Patient", "id": "a"}\n\n{"resourceType": "Obs\n')
    code, _, err = run(capsys, "egfr", "--patient", str(bad))
    assert code == 2
    assert f"{bad}:3: invalid JSON" in err


def test_more_than_one_patient_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    export = FIXTURES / "bulk-ndjson" / "sample-bulk-fhir-datasets-10-patients"
    code, _, err = run(capsys, "egfr", "--patient", str(export / "Patient.000.ndjson"))
    assert code == 2
    assert "holds more than one patient" in err
    code, _, err = run(capsys, "egfr", "--patient", str(export / "Condition.000.ndjson"))
    assert code == 2
    assert "holds more than one patient" in err


def test_not_a_fhir_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    array = tmp_path / "array.json"
    array.write_text("[1, 2]")
    code, _, err = run(capsys, "egfr", "--patient", str(array))
    assert code == 2
    assert "not a FHIR resource" in err
