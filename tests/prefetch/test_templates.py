"""Prefetch template checking and rendering (CDS Hooks 2.0 tokens only)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.exceptions import ConfigurationError
from cds_service.prefetch.templates import (
    USER_TOKENS,
    check_template,
    render_template,
    user_tokens,
)

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


def _reference_render(template: str, context: dict[str, Any]) -> str | None:
    """The definition: every token replaced by one regular-expression pass (the way the
    service rendered before templates were cut into parts once)."""
    users = user_tokens(context)
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        token = match.group(1)
        field = re.match(r"^context\.([A-Za-z][A-Za-z0-9_-]*)$", token)
        value = (
            users.get(token)
            if token in USER_TOKENS
            else (context.get(field.group(1)) if field else None)
        )
        if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
            missing = True
            return ""
        return quote(str(value), safe="-._~")

    rendered = re.sub(r"\{\{\s*([^{}]*?)\s*\}\}", fill, template)
    return None if missing else rendered


_TOKENS = [
    "{{context.patientId}}",
    "{{ context.encounterId }}",
    "{{context.missing}}",
    "{{context.flag}}",
    "{{context.count}}",
    "{{context.empty}}",
    "{{userPractitionerId}}",
    "{{userPractitionerRoleId}}",
    "{{userPatientId}}",
    "{{today()}}",
    "{{ }}",
]
_VALUES = st.one_of(
    st.text(alphabet="ab1~/&=? %é.-_", max_size=6),
    st.integers(),
    st.booleans(),
    st.none(),
    st.just(""),
    st.floats(),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=8)), max_size=6),
    st.fixed_dictionaries(
        {},
        optional={
            "patientId": _VALUES,
            "encounterId": _VALUES,
            "flag": _VALUES,
            "count": _VALUES,
            "empty": _VALUES,
            "userId": st.sampled_from(
                ["Practitioner/p1", "PractitionerRole/r 1", "Patient/x/y", "Device/d", "", "p"]
            ),
        },
    ),
)
def test_rendering_matches_the_one_pass_definition(
    pieces: list[str], context: dict[str, Any]
) -> None:
    template = "".join(pieces)
    assert render_template(template, context) == _reference_render(template, context)
    assert render_template(template, context) == _reference_render(template, context)  # cached
