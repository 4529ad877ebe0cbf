"""The per-call index of the request's FHIR data, shared by every rule of the call.

Built lazily, once per call: resources by source (prefetch key or context field) and type, each
resource's codes, and the results of `Select` bindings. Twelve rules asking for "the patient's
HbA1c observations" cost one pass over the data, not twelve FHIRPath `where()`s over a Bundle.

A medication resource's code is its drug's (`cds_service.terminology.drug_of`): its
`medicationCodeableConcept`, or the `code` of the Medication its `medicationReference` points to,
contained in it or among any of the call's data (prefetch and context). A reference that
resolves to nothing has no code (it matches no value set) and is listed in `unresolved`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cds_service.fhirscan import code_sets, coded, first_of_each_id, group
from cds_service.terminology.medications import (
    MEDICATION_TYPES,
    drug_of,
    medications_by_reference,
)
from cds_service.terminology.valueset import ValueSet

__all__ = ["CODE_ELEMENTS", "DATE_ELEMENTS", "DataIndex", "current_index", "parse_instant"]

# The index of the call being evaluated, for the FHIRPath functions that resolve a medication's
# drug (`memberOf`, `drug()`: compiled once per rule set, they cannot be handed it).
_CURRENT: ContextVar[DataIndex | None] = ContextVar("cds_current_index", default=None)


class _Active:
    """`DataIndex.active()`: a class, not a generator, as it is entered once per rule."""

    __slots__ = ("_index", "_token")

    def __init__(self, index: DataIndex) -> None:
        self._index = index

    def __enter__(self) -> DataIndex:
        self._token = _CURRENT.set(self._index)
        return self._index

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self._token)


def current_index() -> DataIndex | None:
    """The index of the call whose rule is being evaluated (None outside an evaluation)."""
    return _CURRENT.get()


# The clinically relevant date of a resource: the first of these that is present.
DATE_ELEMENTS: tuple[tuple[str, str | None], ...] = (
    ("effectiveDateTime", None),
    ("effectivePeriod", "start"),
    ("effectiveInstant", None),
    ("occurrenceDateTime", None),
    ("performedDateTime", None),
    ("performedPeriod", "start"),
    ("onsetDateTime", None),
    ("onsetPeriod", "start"),
    ("authoredOn", None),
    ("recordedDate", None),
    ("issued", None),
    ("start", None),
    ("period", "start"),
    ("date", None),
)


def parse_instant(value: Any) -> datetime | None:
    """A FHIR date or dateTime as an aware datetime (dates and naive times read as UTC)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    return _parse_text(value)


# A call's resources repeat their timestamps (one encounter's Observations share one): each text
# is parsed once. Datetimes are immutable, so shared.
@lru_cache(maxsize=8192)
def _parse_text(value: str) -> datetime | None:
    text = value.replace("Z", "+00:00")
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Where each resource type keeps the code that `coded:` filters on (medication resources: the
# drug, see the module docstring).
CODE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Immunization": ("vaccineCode",),
    "Encounter": ("type",),
    "Device": ("type",),
    "Medication": ("code",),
}
_CODE = ("code",)  # every other type's


_NONE: frozenset[str] = frozenset()


class DataIndex:
    """Resources of one call, by source and type, with memoised selections."""

    def __init__(self, sources: Mapping[str, Any]) -> None:
        self._sources = sources
        self._by_source: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._codes: dict[int, frozenset[tuple[str | None, str | None]]] = {}
        # beside each resource's pairs, its non-empty codes without a system (fhirscan.coded)
        self._loose: dict[int, frozenset[str]] = {}
        self._dates: dict[int, datetime | None] = {}
        self._medications: dict[str, dict[str, Any]] | None = None
        # the Bundle entry's `fullUrl` of each Medication that has one (references may use it)
        self._full_urls: dict[int, str] = {}
        self.selections: dict[Any, list[Any]] = {}
        self._found: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
        # `Type/id` of each medication resource whose `medicationReference` resolved to nothing
        # here, with that reference (its drug is unknown, so it matched no value set)
        self.unresolved: dict[str, str] = {}

    def _typed(self, source: str) -> dict[str, list[dict[str, Any]]]:
        typed = self._by_source.get(source)
        if typed is None:
            typed, urls = group(self._sources.get(source))
            for medication, url in urls:
                self._full_urls[id(medication)] = url
            self._by_source[source] = typed
        return typed

    def resources(self, resource_type: str, sources: Iterable[str]) -> list[dict[str, Any]]:
        """Resources of a type from the given sources, without duplicates (by type and id),
        computed once per call for each type and list of sources (the list is shared: do not
        modify it)."""
        names = tuple(sources)
        key = (resource_type, names)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = self._collect(resource_type, names)
        return found

    def _collect(self, resource_type: str, sources: tuple[str, ...]) -> list[dict[str, Any]]:
        """The type's resources of the sources in order, the first of each string id kept
        (natively: `first_of_each_id`)."""
        groups = self._by_source
        lists = []
        for source in sources:
            typed = groups.get(source)
            found = (self._typed(source) if typed is None else typed).get(resource_type)
            if found:
                lists.append(found)
        return first_of_each_id(lists)

    def all_resources(self, sources: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every resource of the given sources (default: all of the call's), without duplicates."""
        names = list(self._sources if sources is None else sources)
        types = {t for source in names for t in self._typed(source)}
        return [r for t in sorted(types) for r in self.resources(t, names)]

    def by_type(self, types: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The resources of each of these types among all of the call's sources (as
        `all_resources` gives them, grouped; the lists are shared: do not modify them)."""
        names = tuple(self._sources)
        return {t: self.resources(t, names) for t in types}

    def codes(self, resource: dict[str, Any]) -> frozenset[tuple[str | None, str | None]]:
        """The (system, code) pairs of a resource's code element (a medication resource's:
        its drug's), computed once per resource."""
        key = id(resource)
        found = self._codes.get(key)
        if found is None:
            kind = str(resource.get("resourceType"))
            if kind in MEDICATION_TYPES:
                values: tuple[Any, ...] = (self.drug(resource),)
            else:
                values = tuple(resource.get(e) for e in CODE_ELEMENTS.get(kind, _CODE))
            found, loose = code_sets(values)
            self._codes[key] = found
            self._loose[key] = loose or _NONE
        return found

    def drug(self, resource: dict[str, Any]) -> Any:
        """The CodeableConcept of a medication resource's drug (None when unknown): inline, or
        the code of the Medication its reference resolves to in this call's data."""
        if self._medications is None:  # from the sources' Medications, in order
            self._medications = medications_by_reference(
                (medication, self._full_urls.get(id(medication)))
                for source in self._sources
                for medication in self._typed(source).get("Medication", ())
            )
        drug = drug_of(resource, self._medications)
        if drug.unresolved and drug.reference is not None:
            self.unresolved[f"{resource.get('resourceType')}/{resource.get('id')}"] = drug.reference
        return drug.concept

    def clinical_date(self, resource: dict[str, Any]) -> datetime | None:
        """The resource's clinically relevant date (see DATE_ELEMENTS), computed once."""
        key = id(resource)
        if key not in self._dates:
            found = None
            for element, part in DATE_ELEMENTS:
                value = resource.get(element)
                if part is not None and isinstance(value, dict):
                    value = value.get(part)
                found = parse_instant(value)
                if found is not None:
                    break
            self._dates[key] = found
        return self._dates[key]

    def coded(self, resources: list[dict[str, Any]], value_set: ValueSet) -> list[dict[str, Any]]:
        """The resources whose code is in the value set (each resource's codes read once per
        call, a medication's through `codes`)."""
        return coded(
            resources,
            self._codes,
            self._loose,
            self.codes,
            CODE_ELEMENTS,
            MEDICATION_TYPES,
            value_set.codes,
            value_set.bare,
            value_set.prefix_test,
            value_set.prefix_answers,
        )

    def active(self) -> _Active:
        """Make this the `current_index()` while a rule of its call is evaluated (a context
        manager)."""
        return _Active(self)

    def memo(self, key: Any, compute: Callable[[], list[Any]]) -> list[Any]:
        """A selection computed once per call and shared by every rule asking for it."""
        if key not in self.selections:
            self.selections[key] = compute()
        return self.selections[key]
