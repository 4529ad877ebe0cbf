"""Narrowing Observation prefetch to the codes the rules read.

A rule author writes the search a clinician would think of (`Observation?patient=…&category=
laboratory`), but a patient's whole laboratory history is hundreds of kilobytes that the EHR must
gather and send, and the service must parse, on every call, while the rules look at a handful of
LOINC codes. When every use of such a key is a selection with `coded:` (a value set), the service
advertises the search with `&code=` listing exactly those value sets' codes (`system|code`, an OR
search). The selections see the same resources as before, since they keep only those codes anyway.

A key is left as written when anything else reads it: a FHIRPath expression naming `%key`, a
selection without `coded:`, or one that takes every prefetch key (no `from:`) without `coded:`.
Searches that already filter by `code` or `_id`, reads, value sets too large for a URL and value
sets with an `is-a` filter (their codes cannot be listed) are left alone too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from cds_service.rules.compiled import CompiledRule, CompiledSelect
from cds_service.rules.valuesets import ValueSet

__all__ = ["MAX_CODES", "narrowed_templates"]

# Beyond this many codes the URL grows past what some servers accept (about 2 KB of LOINC).
MAX_CODES = 60

_NARROWABLE_TYPE = "Observation"
_FILTERED = frozenset({"code", "code:in", "_id", "combo-code"})


def _selections(rule: CompiledRule) -> Iterable[CompiledSelect]:
    for binding in rule.bindings:
        if binding.select is not None:
            yield binding.select


def _narrowable(template: str) -> bool:
    resource, _, query = template.partition("?")
    if resource != _NARROWABLE_TYPE or not query:
        return False
    params = {part.split("=", 1)[0] for part in query.split("&")}
    return not params & _FILTERED


def narrowed_templates(
    templates: Mapping[str, str], rules: Sequence[CompiledRule]
) -> dict[str, str]:
    """`templates` with each Observation search that only feeds coded selections narrowed to
    their codes; the other templates unchanged."""
    wanted: dict[str, set[ValueSet]] = {
        key: set() for key, template in templates.items() if _narrowable(template)
    }
    for rule in rules:
        for key in rule.reads & wanted.keys():
            wanted.pop(key)
        for select in _selections(rule):
            sources = select.sources if select.sources is not None else tuple(templates)
            for key in sources:
                if key not in wanted:
                    continue
                if select.value_set is None:
                    wanted.pop(key)
                elif _NARROWABLE_TYPE in select.resources:
                    wanted[key].add(select.value_set)
    out = dict(templates)
    for key, value_sets in wanted.items():
        codes = sorted({pair for value_set in value_sets for pair in value_set.codes})
        if not codes or len(codes) > MAX_CODES or not all(v.enumerated for v in value_sets):
            # read by nothing (kept as written), too many codes for one URL, or an `is-a`
            # filter whose codes cannot be listed
            continue
        out[key] = templates[key] + "&code=" + ",".join(f"{s}|{c}" for s, c in codes)
    return out
