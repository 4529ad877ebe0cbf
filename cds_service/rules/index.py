"""The per-call index of the request's FHIR data, shared by every rule of the call.

Built lazily, once per call: resources by source (prefetch key or context field) and type, each
resource's codes, and the results of `Select` bindings. Twelve rules asking for "the patient's
HbA1c observations" cost one pass over the data, not twelve FHIRPath `where()`s over a Bundle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cds_service.rules.valuesets import ValueSet, codings_of

__all__ = ["CODE_ELEMENTS", "DataIndex"]

# Where each resource type keeps the code that `coded:` filters on.
CODE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "MedicationRequest": ("medicationCodeableConcept",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "MedicationAdministration": ("medicationCodeableConcept",),
    "MedicationDispense": ("medicationCodeableConcept",),
    "Immunization": ("vaccineCode",),
    "Encounter": ("type",),
    "Device": ("type",),
    "Medication": ("code",),
}


def _resources(data: Any) -> Iterable[dict[str, Any]]:
    if isinstance(data, list):
        for item in data:
            yield from _resources(item)
    elif isinstance(data, dict) and isinstance(data.get("resourceType"), str):
        if data["resourceType"] == "Bundle":
            for entry in data.get("entry") or []:
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                    yield from _resources(entry["resource"])
        else:
            yield data


class DataIndex:
    """Resources of one call, by source and type, with memoised selections."""

    def __init__(self, sources: Mapping[str, Any]) -> None:
        self._sources = sources
        self._by_source: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._codes: dict[int, frozenset[tuple[str | None, str | None]]] = {}
        self.selections: dict[Any, list[Any]] = {}

    def _typed(self, source: str) -> dict[str, list[dict[str, Any]]]:
        typed = self._by_source.get(source)
        if typed is None:
            typed = {}
            for resource in _resources(self._sources.get(source)):
                typed.setdefault(resource["resourceType"], []).append(resource)
            self._by_source[source] = typed
        return typed

    def resources(self, resource_type: str, sources: Iterable[str]) -> list[dict[str, Any]]:
        """Resources of a type from the given sources, without duplicates (by type and id)."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for source in sources:
            for resource in self._typed(source).get(resource_type, []):
                ident = resource.get("id")
                if isinstance(ident, str):
                    if ident in seen:
                        continue
                    seen.add(ident)
                out.append(resource)
        return out

    def all_resources(self) -> list[dict[str, Any]]:
        """Every resource of the call (all sources), without duplicates."""
        types = {t for source in self._sources for t in self._typed(source)}
        return [r for t in sorted(types) for r in self.resources(t, self._sources)]

    def codes(self, resource: dict[str, Any]) -> frozenset[tuple[str | None, str | None]]:
        """The (system, code) pairs of a resource's code element, computed once per resource."""
        key = id(resource)
        found = self._codes.get(key)
        if found is None:
            elements = CODE_ELEMENTS.get(str(resource.get("resourceType")), ("code",))
            found = frozenset(
                pair for element in elements for pair in codings_of(resource.get(element))
            )
            self._codes[key] = found
        return found

    def coded(self, resources: list[dict[str, Any]], value_set: ValueSet) -> list[dict[str, Any]]:
        """The resources whose code is in the value set."""
        return [r for r in resources if any(value_set.contains(s, c) for s, c in self.codes(r))]

    def memo(self, key: Any, compute: Callable[[], list[Any]]) -> list[Any]:
        """A selection computed once per call and shared by every rule asking for it."""
        if key not in self.selections:
            self.selections[key] = compute()
        return self.selections[key]
