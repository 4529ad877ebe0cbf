"""Prefetch template checking and rendering (CDS Hooks 2.0 tokens only)."""

from __future__ import annotations

import pytest

from cds_service.exceptions import ConfigurationError
from cds_service.prefetch.templates import check_template, render_template, user_tokens

CONTEXT = {"userId": "PractitionerRole/123", "patientId": "1288992", "encounterId": "89284"}


@pytest.mark.parametrize(
    "template",
    [
        "Patient/{{context.patientId}}",
        "Observation?patient={{context.patientId}}&code=4548-4&_sort=-date&_count=1",
        "PractitionerRole/{{userPractitionerRoleId}}",
        "Encounter/{{ context.encounterId }}",
        "Condition?patient={{context.patientId}}&category=problem-list-item",
    ],
)
def test_valid_templates(template: str) -> None:
    check_template(template)


@pytest.mark.parametrize(
    "template",
    [
        "Medication/{{context.medication.id}}",  # not a root-level field
        "Observation?date=gt{{today() - 90 days}}",  # 3.0 ballot FHIRPath
        "MedicationRequest?_id={{context.draftOrders.MedicationRequest.id}}",  # CRD shorthand
        "Patient/{{userId}}",  # not one of the four user tokens
        "https://evil.example.org/Patient/{{context.patientId}}",  # absolute URL
        "/Patient/{{context.patientId}}",
        "Patient/{{context.patientId}",  # unbalanced
        "",
    ],
)
def test_invalid_templates(template: str) -> None:
    with pytest.raises(ConfigurationError):
        check_template(template)


def test_user_tokens_follow_the_user_type() -> None:
    assert user_tokens(CONTEXT) == {"userPractitionerRoleId": "123"}
    assert user_tokens({"userId": "Practitioner/abc"}) == {"userPractitionerId": "abc"}
    assert user_tokens({"userId": "Patient/p1"}) == {"userPatientId": "p1"}
    assert user_tokens({"userId": "RelatedPerson/r"}) == {"userRelatedPersonId": "r"}
    assert user_tokens({}) == {}


def test_render() -> None:
    assert render_template("Patient/{{context.patientId}}", CONTEXT) == "Patient/1288992"
    assert (
        render_template("PractitionerRole/{{userPractitionerRoleId}}", CONTEXT)
        == "PractitionerRole/123"
    )


def test_unfillable_token_means_not_applicable() -> None:
    assert render_template("Encounter/{{context.encounterId}}", {"patientId": "1"}) is None
    assert render_template("Practitioner/{{userPractitionerId}}", CONTEXT) is None
    assert render_template("X?y={{context.draftOrders}}", {"draftOrders": {"a": 1}}) is None


def test_values_are_percent_encoded() -> None:
    hostile = {"patientId": "1&_include=*&x=../../admin"}
    rendered = render_template("Observation?patient={{context.patientId}}", hostile)
    assert rendered == "Observation?patient=1%26_include%3D%2A%26x%3D..%2F..%2Fadmin"
