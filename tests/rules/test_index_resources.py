"""`DataIndex.resources`: a type's resources from the given sources, in order, the first of each
id kept (resources without a string id are all kept), checked against that definition on random
Bundles with repeated, missing and non-string ids (lists and objects too: never hashed)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.rules.index import DataIndex

# Ids of every JSON kind an EHR may send, unhashable ones (a list, an object) included.
IDS = st.one_of(
    st.sampled_from(["a", "b", "c", "d"]),
    st.none(),
    st.integers(0, 2),
    st.just(["a"]),
    st.just({"value": "a"}),
)
TYPES = st.sampled_from(["Observation", "Condition"])


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": draw(TYPES), "n": draw(st.integers())}
    ident = draw(IDS)
    if ident is not None or draw(st.booleans()):
        resource["id"] = ident
    return resource


def bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in entries]}


def expected(
    sources: dict[str, list[dict[str, Any]]], kind: str, names: list[str]
) -> list[dict[str, Any]]:
    out, seen = [], set()
    for name in names:
        for resource in sources[name]:
            if resource["resourceType"] != kind:
                continue
            ident = resource.get("id")
            if isinstance(ident, str):
                if ident in seen:
                    continue
                seen.add(ident)
            out.append(resource)
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["k1", "k2", "k3"]), st.lists(resources(), max_size=8)),
    st.lists(st.sampled_from(["k1", "k2", "k3"]), min_size=1, max_size=3, unique=True),
    TYPES,
)
def test_resources_keep_the_first_of_each_id_in_source_order(
    sources: dict[str, list[dict[str, Any]]], names: list[str], kind: str
) -> None:
    index = DataIndex({name: bundle(entries) for name, entries in sources.items()})
    found = index.resources(kind, [name for name in names])
    want = expected({n: sources.get(n, []) for n in names}, kind, names)
    assert [id(r) for r in found] == [id(r) for r in want]


def test_one_source_with_a_repeated_id_keeps_its_first() -> None:
    first = {"resourceType": "Observation", "id": "x", "n": 1}
    again = {"resourceType": "Observation", "id": "x", "n": 2}
    other = {"resourceType": "Observation", "id": "y"}
    index = DataIndex({"labs": bundle([first, other, again])})
    assert index.resources("Observation", ["labs"]) == [first, other]
