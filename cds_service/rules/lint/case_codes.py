"""Codes in rule tests are the codes the rule selects: a test's resource that names a member of
the value set a `coded:` selection reads, under a code the set does not hold, is an error.

Such a case passes for the wrong reason. A "silent when eGFR is 45" case whose apixaban order
carries a made-up RxNorm code stays silent because the rule never sees the order, not because of
the eGFR; a firing case with it fails, and the quick fix, adding the test's code to the value
set, gives a set that holds the codes the tests used rather than the codes prescribers order.

A coding is "naming a member" when, of the resource's code element (a medication resource's
inline drug, an Immunization's `vaccineCode`, …: `cds_service.rules.index.CODE_ELEMENTS`), no
coding is in the set and one of them:

1. is a code of one of the set's systems called by the name (its `display`, or the concept's
   `text`) the set gives one of its members: the set lists that drug or finding under another
   code; or
2. is an RxNorm code whose name names an ingredient of the set (`apixaban`, `Eliquis`) and is
   not a drug of that ingredient that the set's `ingredient-drugs` policy leaves out: a topical
   diclofenac, which the ingredient map knows and a set of systemic NSAIDs leaves out, is out
   on purpose, and a negative case may use it.

Deliberate non-members pass: another drug in a medication list (`azithromycin`), a heparin lock
flush where the set lists treatment doses only, a local formulary code. A code of the set's
system that no value set of the rules directory holds and that carries no name at all is a
warning (`test-code-unknown`): a typo (`2160-1` for creatinine's `2160-0`) does the same.

Value sets that a rule reads through `memberOf(...)` in an expression are not checked here:
which resource an expression reads is not known before it runs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from typing import Any

from cds_service.issues import RuleIssue
from cds_service.rules.compiled import CompiledRule, CompiledSelect
from cds_service.rules.index import CODE_ELEMENTS
from cds_service.rules.lint.base import Validator
from cds_service.rules.ruleset import RuleSet
from cds_service.rules.testing.plan import PlannedCase, TestFilePlan, in_fixture
from cds_service.terminology import MEDICATION_TYPES
from cds_service.terminology.ingredients import IngredientMap, ingredient_map_for
from cds_service.terminology.registry import VALUESETS_DIR
from cds_service.terminology.systems import LOINC, RXNORM, SNOMED
from cds_service.terminology.valueset import ValueSet, member_names, words
from cds_service.yamlsource import field_path

__all__ = ["CodeOutsideValueSet", "UnnamedUnknownCode"]

Loc = tuple[str | int, ...]
Member = tuple[str, str]  # (system, code)
_SYSTEM_NAMES = {RXNORM: "RxNorm", SNOMED: "SNOMED CT", LOINC: "LOINC"}
_NAME_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_SEMANTIC_TAG = re.compile(r"\s*\([a-z]+(?:[ /][a-z]+)*\)\s*$")


def _name_key(text: str) -> str:
    """A name as it is compared: lower case, words and numbers only ("Apixaban 5 MG Oral
    Tablet" and "apixaban 5 mg oral tablet" are one name), without a SNOMED CT semantic tag
    ("Atrial fibrillation (disorder)", the fully specified name, is what EHRs display as
    "Atrial fibrillation")."""
    return " ".join(_NAME_TOKEN.findall(_SEMANTIC_TAG.sub("", text).lower()))


def _coding_words(system: str | None, code: str) -> str:
    """How a message names a coding: RxNorm 1364445, a system URL and code, or "code X1 (no
    system)"."""
    if system is None:
        return f"code {code} (no system)"
    return f"{_SYSTEM_NAMES.get(system, system)} {code}"


class _Data:
    """A case's resources with their place: a path into the test file, or a fixture file's name
    and the path inside it."""

    def __init__(self, case_loc: Loc, planned: PlannedCase) -> None:
        self.case_loc = case_loc
        self.planned = planned

    def sources(self, select: CompiledSelect) -> Iterator[tuple[Loc, str | None, Loc, Any]]:
        """(place in the YAML, fixture file or None, path inside it, value) of each source the
        selection reads: its `from:` keys, or every prefetch key and the mock FHIR server's
        answers (what a missing key is fetched from)."""
        case = self.planned.case
        keys = select.sources
        context = self.planned.context or {}
        for key, value in (self.planned.prefetch or {}).items():
            if keys is not None and key not in keys:
                continue
            if key in case.prefetch_files:
                yield (*self.case_loc, "prefetch_files", key), case.prefetch_files[key], (), value
            else:
                yield (*self.case_loc, "prefetch", key), None, (), value
        for key, value in context.items():
            if keys is None or key not in keys:
                continue
            if case.context_file is not None:
                yield (*self.case_loc, "context_file"), case.context_file, (key,), value
            else:
                yield (*self.case_loc, "context", key), None, (), value
        if keys is None and case.fhir_server is not None:
            for url, body in case.fhir_server.responses.items():
                yield (*self.case_loc, "fhir_server", "responses", url), None, (), body


def _resources(value: Any, path: Loc = ()) -> Iterator[tuple[Loc, dict[str, Any]]]:
    """Each resource of a value (Bundles unpacked), with its path inside the value."""
    if not isinstance(value, dict):
        return
    if value.get("resourceType") == "Bundle":
        entries = value.get("entry")
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict):
                yield from _resources(entry.get("resource"), (*path, "entry", index, "resource"))
    elif isinstance(value.get("resourceType"), str):
        yield path, value


def _concepts(resource: dict[str, Any], medication: bool) -> Iterator[tuple[Loc, dict[str, Any]]]:
    """The CodeableConcepts of a resource's code element, with their paths in the resource."""
    kind = str(resource.get("resourceType"))
    if kind in MEDICATION_TYPES:
        elements: Iterable[str] = ("medicationCodeableConcept",)
    elif kind == "Medication" and not medication:
        return
    else:
        elements = CODE_ELEMENTS.get(kind, ("code",))
    for element in elements:
        value = resource.get(element)
        if isinstance(value, dict):
            yield (element,), value
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    yield (element, index), item


class _SelectedCodes(Validator):
    """Walks the code element of every resource of a test case that a `coded:` selection of
    the case's rule reads; `check` says what is wrong with one concept, if anything."""

    id = "selected-codes"  # abstract: not registered
    description = "(base class)"

    def __init__(self) -> None:
        self.rules: dict[str, CompiledRule] = {}
        self.reported: set[tuple[object, ...]] = set()

    def validate(self, rule: CompiledRule) -> Iterable[RuleIssue]:
        self.rules[rule.id] = rule
        return ()

    def check(self, concept: dict[str, Any], vs: ValueSet) -> tuple[Loc, str, str] | None:
        """(where in the concept, what is wrong, what to do), or None."""
        raise NotImplementedError

    def validate_tests(self, plan: TestFilePlan) -> Iterator[RuleIssue]:
        if plan.model is None:
            return
        index_of = {id(case): index for index, case in enumerate(plan.model.cases)}
        for planned in plan.cases:
            rule = self.rules.get(planned.rule_id)
            index = index_of.get(id(planned.case))
            if rule is None or index is None:
                continue
            data = _Data(("cases", index), planned)
            for binding in rule.bindings:
                select = binding.select
                if select is not None and select.value_set is not None:
                    yield from self._selection(plan, data, binding.name, select, select.value_set)

    def _selection(
        self, plan: TestFilePlan, data: _Data, name: str, select: CompiledSelect, vs: ValueSet
    ) -> Iterator[RuleIssue]:
        medication = any(kind in MEDICATION_TYPES for kind in select.resources)
        kinds = set(select.resources) | ({"Medication"} if medication else set())
        for loc, file, inside, value in data.sources(select):
            for at, resource in _resources(value):
                if resource.get("resourceType") not in kinds:
                    continue
                for element, concept in _concepts(resource, medication):
                    found = self.check(concept, vs)
                    if found is None:
                        continue
                    position, problem, advice = found
                    message = (
                        f"{problem}: `{name}` (coded: {vs.id}) never selects this "
                        f"{resource.get('resourceType')}. {advice}"
                    )
                    where = (*inside, *at, *element, *position)
                    if file is None:
                        issue = self.tests_issue(plan, (*loc, *where), message)
                    else:
                        issue = self.tests_issue(plan, loc, in_fixture(file, where, message))
                    # One problem per coding: an anchor used by many cases, or a resource
                    # that several selections read, is reported once, for the first.
                    key = (issue.line, issue.col, file, field_path(where))
                    if key not in self.reported:
                        self.reported.add(key)
                        yield issue


class CodeOutsideValueSet(_SelectedCodes):
    """A test's coding that carries the name of a member of the value set its rule selects with,
    under a code the set does not hold: the rule never sees that resource."""

    id = "test-code-outside-value-set"
    description = (
        "A test case's resource names a member of the value set a `coded:` selection of its rule "
        "reads, under a code outside the set: the rule never sees it."
    )
    severity = "error"

    def __init__(self) -> None:
        super().__init__()
        self.ingredients = IngredientMap()
        # each value set's members' names (what its files call them, and the ingredient map's
        # names of the drugs its ingredient entries take), and its members by name (`_name_key`)
        self.tables: dict[str, tuple[dict[Member, str], dict[str, Member]]] = {}

    def begin(self, ruleset: RuleSet) -> None:
        self.ingredients, _ = ingredient_map_for(ruleset.root / VALUESETS_DIR)

    def check(self, concept: dict[str, Any], vs: ValueSet) -> tuple[Loc, str, str] | None:
        table = self.tables.get(vs.id)
        if table is None:
            drugs = self.ingredients.drugs
            names = {key: drugs[key[1]].display for key in vs.derived if key[1] in drugs}
            names.update(member_names(vs))
            table = self.tables[vs.id] = (names, {_name_key(n): k for k, n in names.items()})
        found = _named_member(concept, vs, *table)
        if found is None:
            return None
        advice = "Use the set's code, or add this code to the value set if prescribers order it"
        return (*found, advice)


class UnnamedUnknownCode(_SelectedCodes):
    """A code that no value set of the rules directory holds, with no name to say what it is, in
    a resource a `coded:` selection reads: a typo (`2160-1` for creatinine's `2160-0`) that
    makes a silent case pass for the wrong reason, or a code nobody can review."""

    id = "test-code-unknown"
    description = (
        "A test case's resource that a `coded:` selection reads carries a code of the set's "
        "system that no value set holds, without a display or text saying what it is."
    )

    def __init__(self) -> None:
        super().__init__()
        self.value_sets: list[ValueSet] = []

    def begin(self, ruleset: RuleSet) -> None:
        self.value_sets = list({id(v): v for v in ruleset.value_sets.values()}.values())

    def check(self, concept: dict[str, Any], vs: ValueSet) -> tuple[Loc, str, str] | None:
        if isinstance(concept.get("text"), str) and concept["text"].strip():
            return None
        codings = concept.get("coding")
        systems = vs.systems
        for index, coding in enumerate(codings if isinstance(codings, list) else []):
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
                continue
            system, code = _system(coding), coding["code"]
            if system not in systems or isinstance(coding.get("display"), str):
                continue
            if any(v.contains(system, code) for v in self.value_sets):
                continue
            return (
                ("coding", index, "code"),
                f"{_coding_words(system, code)} is in no value set of this rules directory and "
                "has no display or text to say what it is",
                "If it is a typo, the case passes for the wrong reason: check the code and give "
                "its display",
            )
        return None


def _named_member(
    concept: dict[str, Any], vs: ValueSet, names: dict[Member, str], members: dict[str, Member]
) -> tuple[Loc, str] | None:
    """Where in the concept, and what: a coding (none of them a member) that names a member
    (`names`: each member's name; `members`: the members by `_name_key`)."""
    codings = concept.get("coding")
    coded = [
        (index, coding)
        for index, coding in enumerate(codings if isinstance(codings, list) else [])
        if isinstance(coding, dict) and isinstance(coding.get("code"), str)
    ]
    if any(vs.contains(_system(c), c["code"]) for _, c in coded):
        return None
    text = concept.get("text") if isinstance(concept.get("text"), str) else None
    for index, coding in coded:
        system, code = _system(coding), coding["code"]
        if system is not None and system not in vs.systems:
            continue  # a local code (a formulary's): outside the set by design
        display = coding.get("display") if isinstance(coding.get("display"), str) else None
        for name in (display, text):
            member = members.get(_name_key(name)) if name else None
            if member is not None:
                return ("coding", index, "code"), (
                    f"{_coding_words(system, code)} '{name}' is not in value set '{vs.id}', "
                    f"which lists that name as {member[1]}"
                )
        if system != RXNORM or (system, code) in vs.excluded or not vs.names:
            continue
        for name in (display, text):
            ingredient = _ingredient(name, vs) if name else None
            if ingredient is not None and name is not None:
                return ("coding", index, "code"), (
                    f"{_coding_words(system, code)} '{name}' names {ingredient}, an ingredient "
                    f"of value set '{vs.id}', but is not in the set{_nearest(name, names)}"
                )
    return None


def _system(coding: dict[str, Any]) -> str | None:
    system = coding.get("system")
    return system if isinstance(system, str) else None


def _ingredient(name: str, vs: ValueSet) -> str | None:
    """The set's ingredient name that `name` names, if any."""
    found = words(name)
    for ingredient in sorted(vs.names):
        if found.issuperset(ingredient):
            return " ".join(ingredient)
    return None


def _nearest(name: str, names: dict[Member, str]) -> str:
    """ ", whose closest member is 1364445 'apixaban 5 MG Oral Tablet'", or nothing."""
    by_name = {d.lower(): (key, d) for key, d in names.items()}
    match = difflib.get_close_matches(name.lower(), list(by_name), n=1, cutoff=0.5)
    if not match:
        return ""
    (_, code), display = by_name[match[0]]
    return f" (the set's closest member: {code} '{display}')"
