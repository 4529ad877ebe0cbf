"""The scans of FHIR JSON that every hook call makes over all of its data, natively.

These walks run over every resource of every call:
- unpacking Bundles into resources (`entries`) grouped by type (`group`);
- reading the codes of each resource's code element (`code_sets`) and keeping the resources whose
  code is in a value set (`coded`, for `coded:` selections);
- the codings of a coded value (`codings_of`) and the Observations by code (`code_index`, for the
  risk scores);
- the resources of several lists without repeated ids (`first_of_each_id`, for selections and the
  scores' record) and whether a prefetched Bundle reports an error (`reports_error`).

Written in C (`_fhirscan.c`, compiled at install by `hatch_build.py` where a C compiler is found),
they take a fraction of the interpreter's time; where the module was not built, the Python
versions below give the same answers (the tests compare the two on every fixture record and on
random FHIR-shaped values).

Values are parsed JSON: dicts, lists, strings, numbers, booleans and None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "NATIVE_SCAN",
    "Pair",
    "code_index",
    "code_sets",
    "coded",
    "codings_of",
    "entries",
    "first_of_each_id",
    "group",
    "python_code_index",
    "python_code_sets",
    "python_coded",
    "python_codings_of",
    "python_entries",
    "python_first_of_each_id",
    "python_group",
    "python_reports_error",
    "reports_error",
]

Pair = tuple[str | None, str | None]
Resource = dict[str, Any]
_CODE = ("code",)


def python_entries(data: Any) -> list[tuple[dict[str, Any], str | None]]:
    """Each resource of the data with its Bundle entry's `fullUrl` (None outside a Bundle or
    when not a string), in order: a list is read item by item, a Bundle's `entry` list is
    unpacked (a Bundle in a Bundle: its own entries; an entry without a dict `resource` with a
    string `resourceType` is skipped), any other dict with a string `resourceType` is one
    resource."""
    out: list[tuple[dict[str, Any], str | None]] = []
    _add_entries(data, None, out)
    return out


def _add_entries(
    data: Any, full_url: str | None, out: list[tuple[dict[str, Any], str | None]]
) -> None:
    if isinstance(data, list):
        for item in data:
            _add_entries(item, None, out)
    elif isinstance(data, dict) and isinstance(data.get("resourceType"), str):
        if data["resourceType"] != "Bundle":
            out.append((data, full_url))
            return
        bundle_entries = data.get("entry")
        for entry in bundle_entries if isinstance(bundle_entries, list) else ():
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue
            kind = resource.get("resourceType")
            if not isinstance(kind, str):
                continue
            url = entry.get("fullUrl")
            url = url if isinstance(url, str) else None
            if kind == "Bundle":  # a Bundle in a Bundle: its own entries
                _add_entries(resource, url, out)
            else:  # the usual entry, without a call per resource
                out.append((resource, url))


def python_code_sets(values: tuple[Any, ...]) -> tuple[frozenset[Pair], frozenset[str]]:
    """The (system, code) pairs of the CodeableConcepts or Codings in `values` (each a concept,
    a coding or a list of them; a coding counts when its `code` is a string, its system when a
    string, else None), and the non-empty codes among them without a system (or an empty
    one), as `coded` takes them."""
    pairs: set[Pair] = set()
    loose: set[str] = set()
    for value in values:
        for concept in value if isinstance(value, list) else (value,):
            if not isinstance(concept, dict):
                continue
            codings = concept.get("coding")
            for coding in codings if isinstance(codings, list) else (concept,):
                if isinstance(coding, dict):
                    code = coding.get("code")
                    if isinstance(code, str):
                        system = coding.get("system")
                        system = system if isinstance(system, str) else None
                        pairs.add((system, code))
                        if not system and code:
                            loose.add(code)
    return frozenset(pairs), frozenset(loose)


def python_codings_of(value: Any) -> list[Pair]:
    """The (system, code) pairs of a Coding, CodeableConcept, list of either, or code string
    (a system or code that is not a string reads as None): a list's items, a dict's `coding`
    list (else the dict itself when it has a `code`), a string as a code without a system."""
    out: list[Pair] = []
    _add_codings(value, out)
    return out


def _add_codings(value: Any, out: list[Pair]) -> None:
    if isinstance(value, list):
        for item in value:
            _add_codings(item, out)
    elif isinstance(value, dict):
        coding = value.get("coding")
        if isinstance(coding, list):
            _add_codings(coding, out)
        elif "code" in value:
            system, code = value.get("system"), value.get("code")
            out.append(
                (
                    system if isinstance(system, str) else None,
                    code if isinstance(code, str) else None,
                )
            )
    elif isinstance(value, str):
        out.append((None, value))


def python_group(
    data: Any,
) -> tuple[dict[str, list[Resource]], list[tuple[Resource, str]]]:
    """The resources of `entries(data)` by resourceType (types and resources in order), and
    each Medication that has an entry `fullUrl`, with it (references may use it)."""
    typed: dict[str, list[Resource]] = {}
    urls: list[tuple[Resource, str]] = []
    for resource, url in python_entries(data):
        kind = resource["resourceType"]
        typed.setdefault(kind, []).append(resource)
        if url is not None and kind == "Medication":
            urls.append((resource, url))
    return typed, urls


def python_coded(
    resources: list[Resource],
    known: dict[int, frozenset[Pair]],
    loose: dict[int, frozenset[str]],
    compute: Callable[[Resource], object],
    elements: Mapping[str, tuple[str, ...]],
    skip: frozenset[str],
    codes: frozenset[tuple[str, str]],
    bare: frozenset[str],
    under: Callable[[str | None, str], bool] | None,
    answers: Mapping[tuple[str | None, str], bool] | None = None,
) -> list[Resource]:
    """The resources whose code is in a value set (its `codes` pairs, `bare` codes and, where it
    has `is-a` filters, the codes `under(system, code)` takes), in order. `answers` are the
    answers `under` has given, by (system, code): the native version reads them rather than
    calling it again (this one calls it, which gives the same answer).

    Each resource's (pairs, loose) are kept in `known` and `loose` by id(): read from its code
    elements (`elements` by resourceType, `code` for the others, `code_sets`), except for the
    types in `skip`, which `compute(resource)` reads and keeps itself (a medication's drug)."""
    out: list[Resource] = []
    for resource in resources:
        key = id(resource)
        pairs, loose_codes = known.get(key), loose.get(key)
        if pairs is None or loose_codes is None:
            kind = resource.get("resourceType")
            kind = kind if isinstance(kind, str) else None
            if kind is not None and kind in skip:
                compute(resource)
            else:
                values = tuple(resource.get(e) for e in elements.get(kind or "", _CODE))
                known[key], loose[key] = python_code_sets(values)
            pairs, loose_codes = known[key], loose[key]
        if (
            not codes.isdisjoint(pairs)
            or (bool(loose_codes) and not bare.isdisjoint(loose_codes))
            or (under is not None and any(under(s, c) for s, c in pairs if c))
        ):
            out.append(resource)
    return out


def python_code_index(
    observations: list[Resource], statuses: frozenset[str], wanted: frozenset[str] | None
) -> dict[str, list[tuple[int, Resource]]]:
    """The Observations whose `status` (a string) is in `statuses`, by each non-empty code of
    their `code` (any system, `codings_of`) that is in `wanted` (None: every code), as
    (position in the list, resource), in order."""
    index: dict[str, list[tuple[int, Resource]]] = {}
    for position, obs in enumerate(observations):
        if not isinstance(obs, dict):
            continue
        status = obs.get("status")
        if not isinstance(status, str) or status not in statuses:
            continue
        entry = (position, obs)
        for code in dict.fromkeys(code for _, code in python_codings_of(obs.get("code")) if code):
            if wanted is None or code in wanted:
                index.setdefault(code, []).append(entry)
    return index


def python_first_of_each_id(lists: list[list[Any]]) -> list[Any]:
    """The resources of the lists, in order, without those whose string `id` an earlier one has
    (resources without a string id, or that are not dicts, are all kept)."""
    out: list[Any] = []
    seen: set[str] = set()
    for resources in lists:
        for resource in resources:
            ident = resource.get("id") if isinstance(resource, dict) else None
            if isinstance(ident, str):
                if ident in seen:
                    continue
                seen.add(ident)
            out.append(resource)
    return out


def python_reports_error(entries: list[Any]) -> bool:
    """True when one of a Bundle's entries holds an OperationOutcome resource (a dict whose
    `resourceType` is "OperationOutcome") with an issue (a dict in its `issue` list) of severity
    `error` or `fatal`."""
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "OperationOutcome":
            continue
        issues = resource.get("issue")
        if isinstance(issues, list) and any(
            isinstance(issue, dict) and issue.get("severity") in ("error", "fatal")
            for issue in issues
        ):
            return True
    return False


def _native() -> Any:
    try:  # compiled at install by hatch_build.py where a C compiler is found
        import cds_service._fhirscan as _fhirscan
    except ImportError:  # pragma: no cover - an install without a C compiler
        return None
    return _fhirscan


_NATIVE = _native()
#: True when the native scans (`_fhirscan.c`) are installed.
NATIVE_SCAN = _NATIVE is not None

entries: Callable[[Any], list[tuple[Resource, str | None]]] = (
    _NATIVE.entries if NATIVE_SCAN else python_entries
)
group: Callable[[Any], tuple[dict[str, list[Resource]], list[tuple[Resource, str]]]] = (
    _NATIVE.group if NATIVE_SCAN else python_group
)
code_sets: Callable[[tuple[Any, ...]], tuple[frozenset[Pair], frozenset[str]]] = (
    _NATIVE.code_sets if NATIVE_SCAN else python_code_sets
)
codings_of: Callable[[Any], list[Pair]] = _NATIVE.codings_of if NATIVE_SCAN else python_codings_of
coded: Callable[..., list[Resource]] = _NATIVE.coded if NATIVE_SCAN else python_coded
code_index: Callable[
    [list[Resource], frozenset[str], frozenset[str] | None], dict[str, list[tuple[int, Resource]]]
] = _NATIVE.code_index if NATIVE_SCAN else python_code_index
first_of_each_id: Callable[[list[list[Any]]], list[Any]] = (
    _NATIVE.first_of_each_id if NATIVE_SCAN else python_first_of_each_id
)
reports_error: Callable[[list[Any]], bool] = (
    _NATIVE.reports_error if NATIVE_SCAN else python_reports_error
)
