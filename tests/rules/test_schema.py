"""The committed JSON Schemas of rule and rule test files are generated from the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service.rules.cli import main
from cds_service.rules.schema import SCHEMA_COMMENT, render_schemas, stale_schemas

OPENAPI = Path(__file__).resolve().parents[2] / "openapi"


def test_committed_schemas_are_current() -> None:
    assert stale_schemas(OPENAPI) == [], "run `cds-service rules schema` and commit the result"


def test_schemas_are_marked_generated_and_forbid_unknown_keys() -> None:
    for name, text in render_schemas().items():
        schema = json.loads(text)
        assert schema["$comment"] == SCHEMA_COMMENT, name
        assert schema["additionalProperties"] is False, name
        assert text == json.dumps(schema, indent=2, sort_keys=True) + "\n"
    rule = json.loads(render_schemas()["rule.schema.json"])
    assert {"schema", "id", "hook", "when", "card"} <= set(rule["required"])
    tests = json.loads(render_schemas()["rule-test.schema.json"])
    assert set(tests["required"]) == {"schema", "now", "cases"}
    case = tests["$defs"]["RuleTestCase"]["properties"]
    assert {"context", "context_file", "prefetch", "prefetch_files", "fhir_server"} <= set(case)


def test_schema_command_writes_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "openapi"
    assert main(["rules", "schema", "--check", "--output-dir", str(out)]) == 1
    assert "rule.schema.json is out of date" in capsys.readouterr().err
    assert main(["rules", "schema", "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["rule-test.schema.json", "rule.schema.json"]
    assert main(["rules", "schema", "--check", "--output-dir", str(out)]) == 0
    (out / "rule.schema.json").write_text("{}\n")
    assert main(["rules", "schema", "--check", "--output-dir", str(out)]) == 1
