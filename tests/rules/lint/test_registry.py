"""The registered validators, and `rules lint --list-validators`."""

from __future__ import annotations

import pytest

from cds_service.rules.cli import main
from cds_service.rules.lint import VALIDATORS, validator_ids


def test_ids_are_unique_and_listed_in_order() -> None:
    ids = validator_ids()
    assert ids == sorted(set(ids))
    assert all(v.severity in ("error", "warning") and v.description for v in VALIDATORS)


def test_list_validators_prints_id_severity_and_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["rules", "lint", "--list-validators"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == validator_ids()
    assert out[-3].split(None, 2) == [
        "rule-without-tests",
        "warning",
        "An active or draft rule has no test file (<rule-id>.test.yaml) beside it.",
    ]
    assert out[-2].split(None, 2)[:2] == ["test-code-outside-value-set", "error"]
