"""`DataIndex.coded` matches resources to a value set by set operations (`fhirscan.coded`);
it must select exactly the resources one of whose codings `ValueSet.contains`, for every bundled
value set and codings as EHRs send them: members, members under another system, without a
system or with an empty one, ICD-10 codes with and without dots (is-a filters), empty codes,
medication resources coded by their drug."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.rules.index import DataIndex
from cds_service.terminology import bundled_value_sets
from cds_service.terminology.valueset import ValueSet

SETS = sorted(bundled_value_sets().values(), key=lambda vs: vs.id)
SYSTEMS = sorted(
    {s for vs in SETS for s, _ in vs.codes} | {s for vs in SETS for s, _ in vs.prefixes}
)
CODES = sorted({c for vs in SETS for _, c in vs.codes})
# ICD-10 codes under each is-a prefix, written as EHRs do (with the dot) and without it
ICD = sorted(
    {f"{p[:3]}.{p[3:]}9" if len(p) > 3 else f"{p}.9" for vs in SETS for _, p in vs.prefixes}
    | {p for vs in SETS for _, p in vs.prefixes}
)

systems = st.one_of(st.sampled_from(SYSTEMS), st.none(), st.just(""), st.just("urn:local"))
codes = st.one_of(st.sampled_from(CODES), st.sampled_from(ICD), st.just(""), st.text(max_size=4))


@st.composite
def codings(draw: st.DrawFn) -> dict[str, Any]:
    coding: dict[str, Any] = {}
    system = draw(systems)
    if system is not None:
        coding["system"] = system
    if draw(st.booleans()) or not coding:
        coding["code"] = draw(codes)
    return coding


concepts = st.lists(codings(), max_size=4).map(lambda cs: {"coding": cs})
kinds = st.sampled_from(["Observation", "Condition", "Immunization", "MedicationRequest"])


def _resource(kind: str, concept: dict[str, Any], n: int) -> dict[str, Any]:
    element = {
        "Observation": "code",
        "Condition": "code",
        "Immunization": "vaccineCode",
        "MedicationRequest": "medicationCodeableConcept",
    }[kind]
    return {"resourceType": kind, "id": f"r{n}", element: concept}


def _expected(index: DataIndex, resources: list[dict[str, Any]], vs: ValueSet) -> list[str]:
    return [r["id"] for r in resources if any(vs.contains(s, c) for s, c in index.codes(r))]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(kinds, concepts), min_size=1, max_size=8))
def test_coded_selects_what_contains_selects_for_every_bundled_value_set(
    drawn: list[tuple[str, dict[str, Any]]],
) -> None:
    resources = [_resource(kind, concept, n) for n, (kind, concept) in enumerate(drawn)]
    index = DataIndex(
        {"data": {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}}
    )
    for vs in SETS:
        assert [r["id"] for r in index.coded(resources, vs)] == _expected(index, resources, vs), (
            vs.id
        )


def test_a_member_without_its_system_and_an_is_a_code_with_its_dot_are_matched() -> None:
    vs = next(v for v in SETS if v.prefixes and v.codes)
    system, prefix = sorted(vs.prefixes)[0]
    member_system, member = sorted(vs.codes)[0]
    dotted = f"{prefix[:3]}.{prefix[3:]}1" if len(prefix) > 3 else f"{prefix}.1"
    resources = [
        _resource("Condition", {"coding": [{"code": member}]}, 0),  # no system: any system
        _resource("Condition", {"coding": [{"system": system, "code": dotted}]}, 1),
        _resource("Condition", {"coding": [{"system": "urn:other", "code": member}]}, 2),
        _resource("Condition", {"coding": [{"system": member_system, "code": ""}]}, 3),
    ]
    index = DataIndex({"data": resources})
    assert [r["id"] for r in index.coded(resources, vs)] == ["r0", "r1"]
    enumerated = next(v for v in SETS if not v.prefixes)
    s, c = sorted(enumerated.codes)[0]
    plain = [
        _resource("Observation", {"coding": [{"system": "", "code": c}]}, 0),
        _resource("Observation", {"coding": [{"system": s, "code": c}]}, 1),
        _resource("Observation", {"coding": [{"system": s, "code": c + "x"}]}, 2),
    ]
    index = DataIndex({"data": plain})
    assert [r["id"] for r in index.coded(plain, enumerated)] == ["r0", "r1"]
