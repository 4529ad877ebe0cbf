"""`is_operation_outcome`: what the prefetch resolver reads as the FHIR server's refusal."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.wire.fhir import is_operation_outcome


def outcome(*severities: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": s, "code": "processing"} for s in severities],
    }


def bundle(*entries: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": list(entries)}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (outcome("information"), True),  # an OperationOutcome itself, whatever it says
        ({"resourceType": "Patient", "id": "p"}, False),
        (bundle({"resource": {"resourceType": "Patient"}}), False),
        (bundle({"resource": outcome("error")}), True),
        (bundle({"resource": outcome("fatal")}), True),
        (bundle({"resource": outcome("warning", "information")}), False),
        (bundle({"resource": {"resourceType": "Condition"}}, {"resource": outcome("error")}), True),
        # shapes a broken server may send: none is a reported error, none raises
        (bundle("text", 3, None, [], {"fullUrl": "x"}), False),
        (bundle({"resource": "text"}, {"resource": []}, {"resource": {"id": "no-type"}}), False),
        (bundle({"resource": {"resourceType": "OperationOutcome", "issue": "error"}}), False),
        (bundle({"resource": {"resourceType": "OperationOutcome", "issue": ["error"]}}), False),
        ({"resourceType": "Bundle", "entry": {"resource": outcome("error")}}, False),
        ({"resourceType": "Bundle"}, False),
        ([outcome("error")], False),
        ("OperationOutcome", False),
    ],
)
def test_an_error_is_an_outcome_or_an_error_entry_of_a_bundle(value: Any, expected: bool) -> None:
    assert is_operation_outcome(value) is expected
