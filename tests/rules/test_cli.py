"""`cds-service rules test`: one line per case, the totals, the exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.rules.cli import main
from tests.rules.conftest import SAMPLE_RULE
from tests.rules.testing.support import write_tests


def test_cli_test_prints_one_line_per_case_and_the_totals(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "test", str(rules_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ok   {SAMPLE_RULE}/fires for ibuprofen on warfarin"
    assert len(out) == 7
    assert out[-1] == "6 passed, 0 failed"


def test_cli_test_fails_with_messages_and_diffs(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = rules_dir / "order-select" / f"{SAMPLE_RULE}.test.yaml"
    path.write_text(path.read_text().replace("on-anticoagulant: false}", "on-anticoagulant: true}"))
    path.write_text(path.read_text().replace("indicator: warning\n", "indicator: critical\n", 1))
    assert main(["rules", "test", str(rules_dir), "--diff"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {SAMPLE_RULE}/fires for ibuprofen on warfarin\n" in out
    assert 'cards[0].indicator: expected "critical", got "warning"' in out
    assert '-    "indicator": "critical",' in out
    assert "conditions.on-anticoagulant: expected true, got false" in out
    assert out.splitlines()[-1] == "4 passed, 2 failed"


def test_cli_test_counts_broken_files_and_rejects_bad_patterns(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tests(rules_dir, "  - name: typo\n    contxt: {}\n")
    assert main(["rules", "test", str(rules_dir)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("FAIL ") and out[-2].endswith("does not load (see the errors above)")
    assert out[-1] == "0 passed, 1 failed"
    assert main(["rules", "test", str(rules_dir), "--run", "("]) == 2
    assert "--run: invalid regular expression" in capsys.readouterr().err


def test_cli_lint_verbose_names_the_expressions_not_compiled(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "lint", "--verbose", str(rules_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    compiled = next(line for line in out if "expressions compiled to closures" in line)
    total = int(compiled.split()[2])
    assert compiled == f"{total} of {total} expressions compiled to closures, 0 on fhirpathpy"

    path = rules_dir / "order-select" / f"{SAMPLE_RULE}.yaml"
    text = path.read_text()
    assert 'fhirpath: "%anticoagulant.exists()"' in text
    path.write_text(
        text.replace(
            'fhirpath: "%anticoagulant.exists()"',
            'fhirpath: "%anticoagulant.repeat(medication).exists()"',
        )
    )
    assert main(["rules", "lint", "--verbose", str(rules_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    (line,) = [line for line in out if "runs on fhirpathpy" in line]
    assert line.startswith(f"{path}:")
    assert line.endswith(
        f"{SAMPLE_RULE}: runs on fhirpathpy, not compiled (repeat() is not compiled): "
        "%anticoagulant.repeat(medication).exists()"
    )
    assert f"{total - 1} of {total} expressions compiled to closures, 1 on fhirpathpy" in out
    assert main(["rules", "lint", str(rules_dir)]) == 0  # without --verbose: not a problem
    assert "runs on fhirpathpy" not in capsys.readouterr().out
