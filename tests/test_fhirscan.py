"""The native FHIR JSON scans (`_fhirscan.c`) give what their Python versions give.

Both are run over data nobody here wrote (every Synthea record, every CDS Hooks example, the
55-patient Bulk Data export, against every bundled value set) and over random FHIR-shaped
values, with the shapes that are easy to get wrong as explicit examples.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import cds_service._fhirscan as native
from cds_service import fhirscan
from cds_service.fhirscan import (
    NATIVE_SCAN,
    python_code_index,
    python_code_sets,
    python_coded,
    python_codings_of,
    python_entries,
    python_first_of_each_id,
    python_group,
    python_reports_error,
)
from cds_service.rules.index import CODE_ELEMENTS
from cds_service.scores.fhir_inputs import OBSERVATION_SETS
from cds_service.terminology import MEDICATION_TYPES, bundled_value_sets
from cds_service.terminology.valueset import ValueSet
from tests.conftest import FIXTURES

USABLE = frozenset({"final", "amended", "corrected"})
SCORE_CODES = frozenset(
    code for set_id in OBSERVATION_SETS for code in bundled_value_sets()[set_id].bare
)


def test_the_native_scans_are_built_and_used() -> None:
    """`make install` compiles `_fhirscan.c` (hatch_build.py); a broken build must not pass
    unnoticed behind the Python versions."""
    assert NATIVE_SCAN, "cds_service/_fhirscan.c was not compiled at install"
    assert fhirscan.entries is native.entries
    assert fhirscan.group is native.group
    assert fhirscan.code_sets is native.code_sets
    assert fhirscan.codings_of is native.codings_of
    assert fhirscan.coded is native.coded
    assert fhirscan.code_index is native.code_index
    assert fhirscan.reports_error is native.reports_error
    assert fhirscan.first_of_each_id is native.first_of_each_id


# --- data nobody here wrote ---------------------------------------------------------------


@cache
def documents() -> tuple[tuple[str, Any], ...]:
    """(name, parsed JSON) of every Synthea record, CDS Hooks example and the Bulk export."""
    found: list[tuple[str, Any]] = []
    for path in sorted((FIXTURES / "fhir-r4" / "synthea").glob("*.json")):
        found.append((path.name, orjson.loads(path.read_bytes())))
    for path in sorted((FIXTURES / "cds-hooks").rglob("*.json")):
        found.append((path.name, orjson.loads(path.read_bytes())))
    bulk = FIXTURES / "bulk-ndjson" / "synthea-55-patients"
    lines = [
        orjson.loads(line)
        for path in sorted(bulk.glob("*.ndjson.gz"))
        for line in gzip.decompress(path.read_bytes()).splitlines()
        if line.strip()
    ]
    found.append(("synthea-55-patients", lines))
    assert len(found) > 60
    return tuple(found)


def resources() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, document in documents():
        for resource, _ in python_entries(document):
            yield name, resource


def same_entries(
    got: list[tuple[dict[str, Any], str | None]], want: list[tuple[dict[str, Any], str | None]]
) -> bool:
    """The same resources (the very objects) with the same fullUrls, in order."""
    return len(got) == len(want) and all(
        g[0] is w[0] and g[1] == w[1] for g, w in zip(got, want, strict=True)
    )


def test_entries_and_group_on_every_fixture_document() -> None:
    total = 0
    for name, document in documents():
        want = python_entries(document)
        total += len(want)
        assert same_entries(native.entries(document), want), name
        typed, urls = native.group(document)
        want_typed, want_urls = python_group(document)
        assert list(typed) == list(want_typed), name
        for kind, members in typed.items():
            assert all(a is b for a, b in zip(members, want_typed[kind], strict=True)), name
        assert [(id(r), u) for r, u in urls] == [(id(r), u) for r, u in want_urls], name
    assert total > 25_000  # about 30,000 resources, most of them the Bulk export's


def test_codes_and_codings_of_every_fixture_resource() -> None:
    for name, resource in resources():
        kind = resource["resourceType"]
        elements = CODE_ELEMENTS.get(kind, ("code",))
        values = tuple(resource.get(e) for e in elements)
        assert native.code_sets(values) == python_code_sets(values), name
        for element in ("code", "category", "valueCodeableConcept", "type", "class"):
            value = resource.get(element)
            assert native.codings_of(value) == python_codings_of(value), (name, element)


def test_code_index_of_every_fixture_documents_observations() -> None:
    checked = 0
    for name, document in documents():
        typed, _ = python_group(document)
        observations = typed.get("Observation", [])
        for wanted in (None, SCORE_CODES, frozenset()):
            got = native.code_index(observations, USABLE, wanted)
            want = python_code_index(observations, USABLE, wanted)
            assert got.keys() == want.keys(), name
            for code, members in want.items():
                assert [(p, id(o)) for p, o in got[code]] == [(p, id(o)) for p, o in members]
        everything = python_code_index(observations, USABLE, None)
        assert python_code_index(observations, USABLE, SCORE_CODES) == {
            code: members for code, members in everything.items() if code in SCORE_CODES
        }
        checked += len(observations)
    assert checked > 10_000


def coded_both(
    items: list[dict[str, Any]], value_set: ValueSet
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`coded` natively and in Python, each with its own memo, medications through a `compute`
    that keeps their drug's codes as `DataIndex.codes` does."""
    results = []
    for implementation in (native.coded, python_coded):
        known: dict[int, frozenset[tuple[str | None, str | None]]] = {}
        loose: dict[int, frozenset[str]] = {}

        def compute(resource: dict[str, Any], known: Any = known, loose: Any = loose) -> object:
            found, codes = python_code_sets((resource.get("medicationCodeableConcept"),))
            known[id(resource)], loose[id(resource)] = found, codes
            return found

        results.append(
            implementation(
                items,
                known,
                loose,
                compute,
                CODE_ELEMENTS,
                MEDICATION_TYPES,
                value_set.codes,
                value_set.bare,
                value_set.prefix_test,
                value_set.prefix_answers,
            )
        )
    return results[0], results[1]


def test_coded_against_every_bundled_value_set_on_the_fixture_records() -> None:
    value_sets = bundled_value_sets()
    assert len(value_sets) > 50
    matched = 0
    for name, document in documents()[:18]:  # the Synthea records
        items = [r for r, _ in python_entries(document)]
        for value_set in value_sets.values():
            got, want = coded_both(items, value_set)
            assert [id(r) for r in got] == [id(r) for r in want], (name, value_set.id)
            matched += len(want)
    assert matched > 100  # the records do hold coded conditions, drugs and labs


# --- random FHIR-shaped values -------------------------------------------------------------

KEYS = ["resourceType", "entry", "resource", "fullUrl", "coding", "code", "system", "status"]
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from(["", "Bundle", "Medication", "Observation", "final", "x", "http://loinc.org"]),
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(JSON)
@example({"resourceType": "Bundle", "entry": 5})
@example({"resourceType": "Bundle", "entry": {"resource": {"resourceType": "Patient"}}})
@example(
    {
        "resourceType": "Bundle",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Medication", "id": "m"}},
            {"fullUrl": 3, "resource": {"resourceType": "Medication"}},
            {
                "resource": {
                    "resourceType": "Bundle",
                    "entry": [{"resource": {"resourceType": "X"}}],
                }
            },
            {"resource": {"resourceType": 7}},
            "entry",
        ],
    }
)
@example([[{"resourceType": "Patient"}], {"resourceType": "Bundle"}])
def test_entries_and_group_on_random_values(value: Any) -> None:
    assert same_entries(native.entries(value), python_entries(value))
    typed, urls = native.group(value)
    want_typed, want_urls = python_group(value)
    assert {k: [id(r) for r in v] for k, v in typed.items()} == {
        k: [id(r) for r in v] for k, v in want_typed.items()
    }
    assert list(typed) == list(want_typed)
    assert [(id(r), u) for r, u in urls] == [(id(r), u) for r, u in want_urls]


@settings(max_examples=400, deadline=None)
@given(st.lists(JSON, max_size=3).map(tuple))
@example(({"coding": [{"system": "", "code": "c"}, {"code": ""}, {"system": 1, "code": "d"}]},))
@example(([{"code": "a"}, "b", None, {"coding": "x", "code": "e"}],))
def test_code_sets_on_random_values(values: tuple[Any, ...]) -> None:
    assert native.code_sets(values) == python_code_sets(values)


@settings(max_examples=400, deadline=None)
@given(JSON)
@example({"coding": [{"coding": [{"system": "s", "code": "c"}], "code": "outer"}, "a"]})
@example([{"coding": [{"system": 1, "code": 2}, {"system": "s"}]}, {"code": "bare"}])
def test_codings_of_on_random_values(value: Any) -> None:
    assert native.codings_of(value) == python_codings_of(value)


def recursive_codings(value: Any) -> list[tuple[str | None, str | None]]:
    """The definition `codings_of` keeps: a list's items, a dict's `coding` list (else the dict
    itself when it has a `code`), a string as a system-less code."""
    if isinstance(value, list):
        return [pair for item in value for pair in recursive_codings(item)]
    if isinstance(value, dict):
        if isinstance(value.get("coding"), list):
            return recursive_codings(value["coding"])
        if "code" in value:
            system, code = value.get("system"), value.get("code")
            return [
                (
                    system if isinstance(system, str) else None,
                    code if isinstance(code, str) else None,
                )
            ]
        return []
    return [(None, value)] if isinstance(value, str) else []


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_codings_of_keeps_the_recursive_definition(value: Any) -> None:
    assert fhirscan.codings_of(value) == recursive_codings(value)
    assert python_codings_of(value) == recursive_codings(value)


OBSERVATION = st.fixed_dictionaries(
    {"resourceType": st.just("Observation")},
    optional={
        "status": st.one_of(st.sampled_from(["final", "amended", "preliminary", ""]), JSON),
        "code": JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(OBSERVATION, JSON), max_size=6))
@example([{"status": ["final"], "code": {"coding": [{"code": "x"}]}}])
@example([{"status": "final", "code": {"coding": [{"code": "x"}, {"system": "s", "code": "x"}]}}])
def test_code_index_on_random_values(observations: list[Any]) -> None:
    for wanted in (None, frozenset({"x", "final"})):
        got = native.code_index(observations, USABLE, wanted)
        want = python_code_index(observations, USABLE, wanted)
        assert {k: [(p, id(o)) for p, o in v] for k, v in got.items()} == {
            k: [(p, id(o)) for p, o in v] for k, v in want.items()
        }


RESOURCE = st.fixed_dictionaries(
    {
        "resourceType": st.one_of(
            st.sampled_from(
                ["Condition", "Observation", "Encounter", "MedicationRequest", "Device", "X"]
            ),
            st.integers(),
            st.none(),
        )
    },
    optional={"code": JSON, "type": JSON, "medicationCodeableConcept": JSON},
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(RESOURCE, max_size=6),
    st.sampled_from(sorted(bundled_value_sets())),
)
@example(
    [{"resourceType": "Condition", "code": {"coding": [{"code": "I48.0"}]}}], "atrial-fibrillation"
)
def test_coded_on_random_resources(items: list[dict[str, Any]], value_set_id: str) -> None:
    got, want = coded_both(items, bundled_value_sets()[value_set_id])
    assert [id(r) for r in got] == [id(r) for r in want]


@pytest.mark.parametrize("system", [None, ""])
def test_coded_takes_a_listed_code_sent_without_a_system(system: str | None) -> None:
    """A coding without a system (or with an empty one) matches a listed code of any system,
    as `ValueSet.contains` says, in a value set without `is-a` filters too."""
    blood_pressure = bundled_value_sets()["blood-pressure"]
    assert not blood_pressure.prefixes and ("http://loinc.org", "85354-9") in blood_pressure.codes
    coding = {"code": "85354-9"} if system is None else {"system": system, "code": "85354-9"}
    panel = {"resourceType": "Observation", "code": {"coding": [coding]}}
    other = {"resourceType": "Observation", "code": {"coding": [{"code": "8867-4"}]}}
    got, want = coded_both([other, panel], blood_pressure)
    assert got == want == [panel]


def error_outcome(severity: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity}]}


def test_reports_error_on_every_fixture_bundle() -> None:
    """Every fixture Bundle's entries as sent, then with an OperationOutcome entry added (an
    error, a fatal issue, a warning) at the start and at the end."""
    bundles = 0
    for name, document in documents():
        if not isinstance(document, dict) or not isinstance(document.get("entry"), list):
            continue
        bundles += 1
        entries = document["entry"]
        assert native.reports_error(entries) is python_reports_error(entries), name
        for severity, reported in (("error", True), ("fatal", True), ("warning", False)):
            added = {"resource": error_outcome(severity)}
            for changed in ([added, *entries], [*entries, added]):
                assert native.reports_error(changed) is reported, (name, severity)
                assert python_reports_error(changed) is reported, (name, severity)
    assert bundles >= 18


def test_first_of_each_id_on_every_fixture_documents_resources() -> None:
    """Each fixture document's resources of each type, alone, twice over, and with every
    other document's of that type (the Bulk export repeats the records' ids)."""
    by_type: dict[str, list[list[dict[str, Any]]]] = {}
    for name, document in documents():
        typed, _ = python_group(document)
        for kind, members in typed.items():
            by_type.setdefault(kind, []).append(members)
            for lists in ([members], [members, members], [members[::-1], members]):
                got, want = native.first_of_each_id(lists), python_first_of_each_id(lists)
                assert [id(r) for r in got] == [id(r) for r in want], (name, kind)
    for kind, lists in by_type.items():
        got, want = native.first_of_each_id(lists), python_first_of_each_id(lists)
        assert [id(r) for r in got] == [id(r) for r in want], kind
    assert sum(len(lists) for lists in by_type.values()) > 200


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.fixed_dictionaries({}, optional={"id": st.one_of(st.sampled_from("ab"), JSON)}),
                JSON,
            ),
            max_size=5,
        ),
        max_size=3,
    )
)
@example([[{"id": "a"}, {"id": "b"}], [{"id": "a"}, {}]])
@example([[{"id": "a"}, {"id": ["a"]}, {"id": ["a"]}, {}, {}]])
@example([[{"id": "a"}, "a", 3, None]])
@example([])
def test_first_of_each_id_on_random_resources(lists: list[list[Any]]) -> None:
    got, want = native.first_of_each_id(lists), python_first_of_each_id(lists)
    assert [id(r) for r in got] == [id(r) for r in want]


SEVERITY = st.one_of(st.sampled_from(["error", "fatal", "warning", "information", ""]), JSON)
OUTCOME = st.fixed_dictionaries(
    {"resourceType": st.one_of(st.sampled_from(["OperationOutcome", "Patient"]), st.integers())},
    optional={
        "issue": st.one_of(
            JSON,
            st.lists(
                st.one_of(JSON, st.fixed_dictionaries({}, optional={"severity": SEVERITY})),
                max_size=3,
            ),
        )
    },
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(JSON, st.fixed_dictionaries({"resource": st.one_of(OUTCOME, JSON)}))))
@example([{"resource": {"resourceType": "OperationOutcome", "issue": {"severity": "error"}}}])
@example([{"resource": {"resourceType": "OperationOutcome", "issue": [["error"], {}]}}])
@example([[{"resource": error_outcome("error")}], {"resource": error_outcome("fatal")}])
def test_reports_error_on_random_entries(entries: list[Any]) -> None:
    assert native.reports_error(entries) is python_reports_error(entries)


# --- what the native module refuses, and what it passes on ---------------------------------


def test_coded_passes_on_an_error_raised_by_compute_or_the_prefix_test() -> None:
    def failing(_: dict[str, Any]) -> object:
        raise LookupError("no drug")

    def refusing(system: str | None, code: str) -> bool:
        raise ValueError(code)

    med = [{"resourceType": "MedicationRequest", "id": "m"}]
    for implementation in (native.coded, python_coded):
        with pytest.raises(LookupError):
            implementation(
                med, {}, {}, failing, {}, MEDICATION_TYPES, frozenset(), frozenset(), None, None
            )
        condition = [{"resourceType": "Condition", "code": {"coding": [{"code": "I10"}]}}]
        with pytest.raises(ValueError, match="I10"):
            implementation(
                condition,
                {},
                {},
                failing,
                {},
                frozenset(),
                frozenset(),
                frozenset(),
                refusing,
                None,
            )


def test_native_coded_reads_the_prefix_answers_before_asking() -> None:
    """An `is-a` answer given before (the value set's memo) is read, not asked again; a code
    not answered yet is asked."""
    asked: list[tuple[str | None, str]] = []

    def under(system: str | None, code: str) -> bool:
        asked.append((system, code))
        return code.startswith("I48")

    known = {"resourceType": "Condition", "code": {"coding": [{"code": "I48.0"}]}}
    new = {"resourceType": "Condition", "code": {"coding": [{"code": "I48.1"}]}}
    answers: dict[tuple[str | None, str], bool] = {(None, "I48.0"): True}
    found = native.coded(
        [known, new], {}, {}, print, {}, frozenset(), frozenset(), frozenset(), under, answers
    )
    assert found == [known, new] and asked == [(None, "I48.1")]


def test_coded_says_when_compute_keeps_nothing() -> None:
    med = [{"resourceType": "MedicationRequest", "id": "m"}]
    with pytest.raises(RuntimeError, match="did not keep"):
        native.coded(
            med, {}, {}, lambda r: None, {}, MEDICATION_TYPES, frozenset(), frozenset(), None, None
        )


UNTYPED: Any = native  # the calls below break the stub's types on purpose


@pytest.mark.parametrize(
    "call",
    [
        lambda: UNTYPED.code_sets([{"code": "x"}]),  # a list, not a tuple
        lambda: UNTYPED.coded(
            (), {}, {}, print, {}, frozenset(), frozenset(), frozenset(), None, None
        ),
        lambda: UNTYPED.coded(
            [], {}, {}, print, {}, frozenset(), frozenset(), frozenset(), None, []
        ),
        lambda: UNTYPED.coded([], {}, {}),
        lambda: UNTYPED.coded(
            [{"resourceType": "X"}, 3],
            {},
            {},
            print,
            {},
            frozenset(),
            frozenset(),
            frozenset(),
            None,
        ),
        lambda: UNTYPED.code_index([], ["final"], None),
        lambda: UNTYPED.code_index([], USABLE, ["x"]),
        lambda: UNTYPED.code_index([], USABLE),
        lambda: UNTYPED.reports_error(({"resource": error_outcome("error")},)),
        lambda: UNTYPED.first_of_each_id(({"id": "a"},)),
        lambda: UNTYPED.first_of_each_id([({"id": "a"},)]),
    ],
)
def test_the_native_scans_refuse_wrong_arguments(call: Callable[[], object]) -> None:
    with pytest.raises(TypeError):
        call()


def test_deep_values_raise_recursion_errors_not_crashes() -> None:
    """Every text is held to the JSON nesting limit before it is scanned; a value nested
    deeper than the interpreter's recursion limit is refused all the same, never a crash."""
    deep: Any = {"code": "x"}
    for _ in range(100_000):
        deep = [deep]
    for scan in (native.entries, native.codings_of):
        with pytest.raises(RecursionError):
            scan(deep)
