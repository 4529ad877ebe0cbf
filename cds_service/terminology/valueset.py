"""Value sets: FHIR ValueSet files read from a directory, and membership in them.

A value set file (`<id>.yaml`, `.yml` or `.json`) holds a FHIR ValueSet whose `id` is the file
name. It is referred to by that id (or its canonical `url`). Its members are the union of:

- `expansion.contains` (nested `contains` included): (system, code) pairs;
- `compose.include[].concept`: codes of the include's `system`;
- `compose.include[].filter` with `property: concept`, `op: is-a` on an ICD-10 system (ICD-10-CM
  or WHO ICD-10): every code of that system under the filter's code. ICD-10's hierarchy is its
  codes' prefixes, so this is prefix matching with the dot ignored: `is-a I50` takes `I50`,
  `I50.9` and `I509`;
- `compose.include[].valueSet`: every member of the listed value sets of the same directory;
- the clinical drugs of its RxNorm ingredient entries: an entry that the ingredient map
  (`ingredients.py`) knows as an ingredient (`apixaban`) takes every drug mapped to it (`apixaban
  5 MG Oral Tablet [Eliquis]`). The extension `INGREDIENT_DRUGS_URL` (`valueCode`) says which:
  `all` (the default), `oral` (oral dose forms only), `single` (single-ingredient drugs only),
  `single-oral` (both), `systemic` (no drug applied where it acts: not topical, ophthalmic,
  otic…) or `listed` (none: the entries listed only). These are in `codes` and,
  for reports, in `derived`.

A coding with a system matches in that system only; a bare code (no system) matches in any.

Medications carry ingredient names too. An RxNorm entry whose display has no digit is an
ingredient (RxNorm IN or PIN: `warfarin`, `dabigatran etexilate`; clinical drugs always carry a
strength), and its display is one of the set's ingredient names. Ingredients listed by name only
(no RxNorm code at hand) come from the value set's extension `INGREDIENT_NAME_URL`
(`valueString`). The risk scores match a medication by code or by an ingredient name in its
text (`ValueSet.names_in`): clinical-drug codes carry no ingredient code, their text does.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cds_service.fhirscan import codings_of
from cds_service.issues import RuleIssue
from cds_service.terminology.ingredients import (
    INGREDIENTS_FILE,
    TERMINOLOGY_DIR,
    IngredientMap,
    ingredient_map_for,
    is_oral,
    is_systemic,
)
from cds_service.terminology.systems import ICD10_SYSTEMS, RXNORM
from cds_service.yamlsource import Located, field_path, read_yaml

__all__ = [
    "INGREDIENT_DRUGS",
    "INGREDIENT_DRUGS_URL",
    "INGREDIENT_NAME_URL",
    "ValueSet",
    "coded",
    "codings_of",
    "load_value_sets",
    "member_names",
    "takes_drug",
    "words",
]

INGREDIENT_NAME_URL = "urn:cds-service:extension:ingredient-name"
INGREDIENT_DRUGS_URL = "urn:cds-service:extension:ingredient-drugs"
# Which drugs of the map an ingredient entry takes, by the extension's valueCode: (the dose forms,
# any, oral or systemic; single-ingredient drugs only), or none.
INGREDIENT_DRUGS: dict[str, tuple[str, bool] | None] = {
    "all": ("any", False),
    "oral": ("oral", False),
    "single": ("any", True),
    "single-oral": ("oral", True),
    "systemic": ("systemic", False),
    "listed": None,
}
_WORD = re.compile(r"[a-z]+")
# Codes whose `is-a` membership a value set remembers (then forgets them all and starts again):
# the codes of a deployment's calls repeat, and a patient's record holds a few hundred.
_PREFIX_MEMO_SIZE = 4096
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SUFFIXES = (".yaml", ".yml", ".json")


def takes_drug(policy: str, dose_form: str, components: int) -> bool:
    """Whether an ingredient entry of a set with this `ingredient-drugs` policy takes a drug of
    that RxNorm dose form and number of ingredients."""
    rule = INGREDIENT_DRUGS[policy]
    if rule is None:
        return False
    forms, single_only = rule
    if forms == "oral":
        in_forms = is_oral(dose_form)
    elif forms == "systemic":
        in_forms = is_systemic(dose_form)
    else:
        in_forms = True
    return in_forms and (components == 1 or not single_only)


def words(text: str) -> frozenset[str]:
    """The lower-case words (runs of letters) of a text, as ingredient names are matched."""
    return frozenset(_WORD.findall(text.lower()))


@dataclass(frozen=True, slots=True)
class ValueSet:
    """A set of codes: (system, code) pairs, ICD-10 code prefixes, and ingredient names."""

    id: str
    url: str | None
    codes: frozenset[tuple[str, str]]
    # (ICD-10 system, code prefix without dots), from `is-a` filters
    prefixes: frozenset[tuple[str, str]] = frozenset()
    # ingredient names as their words: ("dabigatran", "etexilate")
    names: frozenset[tuple[str, ...]] = frozenset()
    # the members (among `codes`) that are there only as drugs of an ingredient entry
    derived: frozenset[tuple[str, str]] = frozenset()
    # the drugs of its ingredient entries that its `ingredient-drugs` policy leaves out (a
    # topical diclofenac in a set of systemic NSAIDs): not members, on purpose
    excluded: frozenset[tuple[str, str]] = frozenset()
    # its file and those of the sets it includes, where `member_names` reads what they call
    # their members (for messages only: the names are not kept in memory)
    files: tuple[Path, ...] = field(default=(), compare=False, repr=False)
    bare: frozenset[str] = field(init=False, compare=False, repr=False)
    _by_system: dict[str, frozenset[str]] = field(init=False, compare=False, repr=False)
    # (system, code) → whether an `is-a` filter takes it (`_under_prefix`)
    _prefix_memo: dict[tuple[str | None, str], bool] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        by_system: dict[str, set[str]] = {}
        for system, code in self.codes:
            by_system.setdefault(system, set()).add(code)
        object.__setattr__(self, "bare", frozenset(code for _, code in self.codes))
        object.__setattr__(self, "_by_system", {s: frozenset(c) for s, c in by_system.items()})
        object.__setattr__(self, "_prefix_memo", {})

    @property
    def enumerated(self) -> bool:
        """True when `codes` is every member (no `is-a` filter)."""
        return not self.prefixes

    def contains(self, system: str | None, code: str | None) -> bool:
        """Membership of a coding; a bare code (no system) matches in any system."""
        if not code:
            return False
        if (system, code) in self.codes if system else code in self.bare:
            return True
        return bool(self.prefixes) and self._under_prefix(system, code)

    @property
    def prefix_test(self) -> Callable[[str | None, str], bool] | None:
        """Whether an `is-a` filter takes a (system, non-empty code), None without filters."""
        return self._under_prefix if self.prefixes else None

    @property
    def prefix_answers(self) -> Mapping[tuple[str | None, str], bool]:
        """The answers `prefix_test` has given, by (system, code) (at most 4,096 kept)."""
        return self._prefix_memo

    def _under_prefix(self, system: str | None, code: str) -> bool:
        """Whether an `is-a` filter takes the (non-empty) code: its dot-less form starts with a
        prefix of the code's system (any system's, for a code without one). Remembered."""
        memo = self._prefix_memo
        found = memo.get((system, code))
        if found is None:
            key = code.replace(".", "")
            found = any(
                key.startswith(prefix) for s, prefix in self.prefixes if system in (None, s)
            )
            if len(memo) >= _PREFIX_MEMO_SIZE:
                memo.clear()
            memo[(system, code)] = found
        return found

    @property
    def systems(self) -> frozenset[str]:
        """The code systems of its members."""
        return frozenset(self._by_system) | {system for system, _ in self.prefixes}

    def codes_of(self, system: str) -> frozenset[str]:
        """The listed codes of one system (not those an `is-a` filter takes)."""
        return self._by_system.get(system, frozenset())

    def names_in(self, text_words: frozenset[str]) -> bool:
        """True when every word of one of the ingredient names is among `text_words`."""
        return any(text_words.issuperset(name) for name in self.names)


def member_names(value_set: ValueSet) -> dict[tuple[str, str], str]:
    """What the value set's files (its own, then those it includes) call its members, where
    they name them: read from the files again, for messages (`rules lint`), never kept."""
    names: dict[tuple[str, str], str] = {}
    for path in value_set.files:
        for key, name in _file_names(str(path), _mtime(path)).items():
            names.setdefault(key, name)
    return names


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


@functools.lru_cache(maxsize=256)
def _file_names(path: str, mtime: int) -> dict[tuple[str, str], str]:
    """The displays a value set file gives its codes (`expansion.contains`, nested, and
    `compose.include[].concept`); empty when it cannot be read."""
    try:
        raw = Path(path).read_bytes()
        data = json.loads(raw) if path.endswith(".json") else yaml.load(raw, Loader=_LOADER)
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    names: dict[tuple[str, str], str] = {}
    if not isinstance(data, dict):
        return names
    compose = data.get("compose")
    includes = (compose.get("include") or []) if isinstance(compose, dict) else []
    listed = [
        *_expansion_codes(data),
        *(code for i in includes if isinstance(i, dict) for code in _include_codes(i)),
    ]
    for system, code, display in listed:
        if isinstance(display, str):
            names.setdefault((system, code), display)
    return names


def coded(concept: Any, value_set: ValueSet) -> bool:
    """True when a coding of a CodeableConcept (or a Coding, or a list) is in the value set."""
    return any(value_set.contains(system, code) for system, code in codings_of(concept))


# --- loading ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Draft:
    """One file's own members, before `compose.include[].valueSet` is resolved."""

    path: Path
    id: str
    url: str | None
    codes: set[tuple[str, str]] = field(default_factory=set)
    prefixes: set[tuple[str, str]] = field(default_factory=set)
    names: set[tuple[str, ...]] = field(default_factory=set)
    includes: list[tuple[str, tuple[int, int]]] = field(default_factory=list)
    ingredient_drugs: str = "all"


class _File:
    """A parsed file and where its values are (JSON files have no positions)."""

    def __init__(self, path: Path, data: Any, located: Located | None) -> None:
        self.path = path
        self.data = data
        self.located = located

    def position(self, loc: tuple[str | int, ...]) -> tuple[int, int]:
        return self.located.position(loc) if self.located else (1, 1)

    def issue(self, loc: tuple[str | int, ...], message: str) -> RuleIssue:
        line, col = self.position(loc)
        return RuleIssue(self.path, line, col, field_path(loc), message)


def _parse(path: Path) -> tuple[_File | None, list[RuleIssue]]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return None, [RuleIssue(path, 1, 1, "", f"not valid JSON: {exc}")]
        return _File(path, data, None), []
    located, errors = read_yaml(path)
    if located is None:
        return None, [RuleIssue(path, e.line, e.col, e.field, e.message) for e in errors]
    return _File(path, located.value, located), []


Listed = tuple[str, str, Any]  # (system, code, display as the file gives it)


def _expansion_codes(data: dict[str, Any]) -> Iterator[Listed]:
    """The codes of a ValueSet's `expansion.contains`, nested `contains` included, in order."""
    expansion = data.get("expansion")
    items = list((expansion.get("contains") or []) if isinstance(expansion, dict) else [])
    for item in items:  # nested `contains` are appended, and reached, as the loop goes
        if not isinstance(item, dict):
            continue
        system, code = item.get("system"), item.get("code")
        if isinstance(system, str) and isinstance(code, str):
            yield system, code, item.get("display")
        nested = item.get("contains")
        items.extend(nested if isinstance(nested, list) else [])


def _include_codes(include: dict[str, Any]) -> Iterator[Listed]:
    """The codes a `compose.include` lists as `concept`s of its `system`."""
    system = include.get("system")
    if not isinstance(system, str):
        return
    for concept in include.get("concept", []) or []:
        if isinstance(concept, dict) and isinstance(concept.get("code"), str):
            yield system, concept["code"], concept.get("display")


def _add_code(system: str, code: str, display: Any, draft: _Draft) -> None:
    draft.codes.add((system, code))
    _add_name(system, display, draft)


def _add_name(system: str, display: Any, draft: _Draft) -> None:
    """An RxNorm display without a digit names an ingredient (drugs carry a strength)."""
    if system == RXNORM and isinstance(display, str) and not any(c.isdigit() for c in display):
        name = tuple(sorted(words(display)))
        if name:
            draft.names.add(name)


def _read_include(file: _File, index: int, include: Any, draft: _Draft) -> list[RuleIssue]:
    loc: tuple[str | int, ...] = ("compose", "include", index)
    if not isinstance(include, dict):
        return [file.issue(loc, "must be a mapping")]
    issues: list[RuleIssue] = []
    system = include.get("system")
    value_sets = include.get("valueSet")
    if value_sets is not None:
        if system is not None:
            return [file.issue(loc, "include either a `system` or `valueSet`s, not both")]
        if not isinstance(value_sets, list) or not all(isinstance(v, str) for v in value_sets):
            return [file.issue((*loc, "valueSet"), "must be a list of value set ids or urls")]
        for position, ref in enumerate(value_sets):
            draft.includes.append((ref, file.position((*loc, "valueSet", position))))
        return []
    if not isinstance(system, str):
        return [file.issue(loc, "needs a `system` (or `valueSet`)")]
    for _, code, display in _include_codes(include):
        _add_code(system, code, display, draft)
    for position, rule in enumerate(include.get("filter", []) or []):
        where = (*loc, "filter", position)
        if not isinstance(rule, dict):
            issues.append(file.issue(where, "must be a mapping"))
        elif rule.get("op") != "is-a" or rule.get("property") != "concept":
            issues.append(file.issue(where, "only `property: concept, op: is-a` is supported"))
        elif system not in ICD10_SYSTEMS:
            issues.append(file.issue(where, "`is-a` filters are supported for ICD-10 systems only"))
        elif not isinstance(rule.get("value"), str) or not rule["value"].strip("."):
            issues.append(file.issue((*where, "value"), "must be an ICD-10 code"))
        else:
            draft.prefixes.add((system, rule["value"].replace(".", "")))
    return issues


def _read(path: Path) -> tuple[_Draft | None, list[RuleIssue]]:
    file, issues = _parse(path)
    if file is None:
        return None, issues
    data = file.data
    if not isinstance(data, dict) or data.get("resourceType") != "ValueSet":
        return None, [file.issue(("resourceType",), "must be a FHIR ValueSet")]
    vs_id = data.get("id")
    if not isinstance(vs_id, str) or vs_id != path.stem:
        return None, [file.issue(("id",), f"must equal the file name '{path.stem}'")]
    url = data.get("url") if isinstance(data.get("url"), str) else None
    draft = _Draft(path, vs_id, url)
    for system, code, display in _expansion_codes(data):
        _add_code(system, code, display, draft)
    compose = data.get("compose") or {}
    if isinstance(compose, dict):
        if compose.get("exclude"):
            issues.append(file.issue(("compose", "exclude"), "`exclude` is not supported"))
        for index, include in enumerate(compose.get("include", []) or []):
            issues.extend(_read_include(file, index, include, draft))
    for position, ext in enumerate(data.get("extension", []) or []):
        if isinstance(ext, dict) and ext.get("url") == INGREDIENT_DRUGS_URL:
            if ext.get("valueCode") not in INGREDIENT_DRUGS:
                loc = ("extension", position, "valueCode")
                known = ", ".join(INGREDIENT_DRUGS)
                issues.append(file.issue(loc, f"must be one of {known}"))
            else:
                draft.ingredient_drugs = str(ext["valueCode"])
        if isinstance(ext, dict) and ext.get("url") == INGREDIENT_NAME_URL:
            name = tuple(sorted(words(str(ext.get("valueString") or ""))))
            if not name:
                loc = ("extension", position, "valueString")
                issues.append(file.issue(loc, "must be an ingredient name"))
            else:
                draft.names.add(name)
    return draft, issues


class _Resolver:
    """Adds the members of included value sets, each set resolved once; cycles are errors."""

    def __init__(self, drafts: dict[str, _Draft], ingredients: IngredientMap) -> None:
        self.drafts = drafts
        self.ingredients = ingredients
        self.by_ref = {**{d.url: d for d in drafts.values() if d.url}, **drafts}
        self.done: dict[str, ValueSet | None] = {}
        self.issues: list[RuleIssue] = []

    def drugs_of(self, draft: _Draft) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """The drugs its ingredient entries take, as its `ingredient-drugs` policy says, and
        those the policy leaves out."""
        policy = draft.ingredient_drugs
        taken: set[tuple[str, str]] = set()
        left_out: set[tuple[str, str]] = set()
        for system, code in draft.codes:
            if system != RXNORM:
                continue
            for drug in self.ingredients.drugs_of(code):
                if takes_drug(policy, drug.dose_form, drug.components):
                    taken.add((RXNORM, drug.rxcui))
                else:
                    left_out.add((RXNORM, drug.rxcui))
        return taken, left_out

    def resolve(self, draft: _Draft, stack: tuple[str, ...] = ()) -> ValueSet | None:
        if draft.id in self.done:
            return self.done[draft.id]
        codes, prefixes, names = set(draft.codes), set(draft.prefixes), set(draft.names)
        taken, excluded = self.drugs_of(draft)
        files = [draft.path]
        derived = taken - codes
        codes |= derived
        failed = False
        for ref, (line, col) in draft.includes:
            target = self.by_ref.get(ref)
            if target is None:
                message = f"unknown value set '{ref}'"
            elif target.id in (*stack, draft.id):
                message = f"value set '{ref}' includes itself"
            elif (included := self.resolve(target, (*stack, draft.id))) is None:
                message = f"value set '{ref}' did not load"
            else:
                codes |= included.codes
                prefixes |= included.prefixes
                names |= included.names
                derived |= included.derived
                excluded |= included.excluded
                files.extend(f for f in included.files if f not in files)
                continue
            failed = True
            self.issues.append(RuleIssue(draft.path, line, col, "compose.include", message))
        value_set: ValueSet | None = None
        if not codes and not prefixes:
            if not failed:
                self.issues.append(
                    RuleIssue(draft.path, 1, 1, "expansion", "the value set has no codes")
                )
        elif not failed:
            value_set = ValueSet(
                draft.id,
                draft.url,
                frozenset(codes),
                frozenset(prefixes),
                frozenset(names),
                frozenset(derived - draft.codes),
                frozenset(excluded - codes),
                tuple(files),
            )
        self.done[draft.id] = value_set
        return value_set


#: Value sets loaded without a problem, by where they were read from and the files' signature:
#: a rules directory reloaded for one changed rule, or a workbench draft (whose value sets are
#: the served ones, linked), does not read and resolve them again. Few entries: a process reads
#: one or two directories.
_LOADED: dict[tuple[object, ...], dict[str, ValueSet]] = {}
_LOADED_MAX = 8


def _signature(directory: Path) -> tuple[object, ...] | None:
    """The directory (resolved) and every file it holds, with the ingredient map it reads:
    names, sizes and modification times. None when it cannot be read."""
    ingredients = directory.parent / TERMINOLOGY_DIR / INGREDIENTS_FILE
    try:
        files = tuple(
            (p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in sorted(directory.iterdir())
        )
        mapped = None
        if ingredients.is_file():
            st = ingredients.stat()
            mapped = (str(ingredients.resolve()), st.st_size, st.st_mtime_ns)
        return (str(directory.resolve()), files, mapped)
    except OSError:
        return None


def load_value_sets(
    directory: Path, ingredients: IngredientMap | None = None
) -> tuple[dict[str, ValueSet], list[RuleIssue]]:
    """Every value set under `directory`, keyed by id and by url, and the problems found.

    A file with a problem is left out (and so is a set that includes it); the others load.
    Ingredient entries take their drugs from `ingredients`, by default the map of the rules
    directory (`ingredient_map_for`). With the default map, a directory whose files are
    unchanged since it last loaded without a problem is not read again.
    """
    key = _signature(directory) if ingredients is None and directory.is_dir() else None
    if key is not None and key in _LOADED:
        return dict(_LOADED[key]), []
    sets, issues = _load_value_sets(directory, ingredients)
    if key is not None and not issues:
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = dict(sets)
    return sets, issues


def _load_value_sets(
    directory: Path, ingredients: IngredientMap | None
) -> tuple[dict[str, ValueSet], list[RuleIssue]]:
    issues: list[RuleIssue] = []
    if ingredients is None:
        ingredients, map_issues = ingredient_map_for(directory)
        issues.extend(map_issues)
    drafts: dict[str, _Draft] = {}
    if not directory.is_dir():
        return {}, issues
    for path in sorted(p for p in directory.iterdir() if p.suffix in _SUFFIXES):
        draft, problems = _read(path)
        issues.extend(problems)
        if draft is not None and not problems:
            drafts[draft.id] = draft
    resolver = _Resolver(drafts, ingredients)
    sets: dict[str, ValueSet] = {}
    for draft in drafts.values():
        value_set = resolver.resolve(draft)
        if value_set is not None:
            sets[value_set.id] = value_set
            if value_set.url:
                sets[value_set.url] = value_set
    return sets, issues + resolver.issues
