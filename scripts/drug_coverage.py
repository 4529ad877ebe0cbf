"""Which fixture drugs each drug value set covers: docs/drug-coverage.md.

    python -m scripts.drug_coverage            # (re)write docs/drug-coverage.md
    python -m scripts.drug_coverage --check    # exit 1 when it is out of date or a code is missed

Every RxNorm code of the shared fixtures (`scripts/fixture_drugs.py`) is classified against each
drug class of `scripts/drug_terminology.CLASSES`, as the service loads them (ingredient map
included). A code *names* a class when one of its displays holds every word of one of the class's
ingredient names (`ValueSet.names`: its ingredient entries and `ingredient-name`s, those of the
sets it includes too). A code that names a class must be a member, unless the class's
`ingredient-drugs` policy leaves it out and says why (a topical NSAID is not an oral NSAID): any
other is *missed*, and `tests/terminology/test_drug_coverage.py` fails on it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cds_service.terminology import RXNORM, IngredientMap, ValueSet, load_value_sets, words
from cds_service.terminology.ingredients import ingredient_map_for
from scripts.drug_terminology import CLASSES
from scripts.fixture_drugs import FIXTURES, FixtureDrug, fixture_drugs

ROOT = Path(__file__).resolve().parents[1]
VALUESETS = ROOT / "rules" / "_valuesets"
REPORT = ROOT / "docs" / "drug-coverage.md"


@dataclass(slots=True)
class ClassCoverage:
    """One drug class over the fixture codes."""

    id: str
    policy: str
    note: str  # what the class leaves out by design (scripts/drug_terminology.CLASSES)
    listed: list[FixtureDrug] = field(default_factory=list)  # members by a listed code
    derived: list[FixtureDrug] = field(default_factory=list)  # members through an ingredient
    excluded: list[tuple[FixtureDrug, str]] = field(default_factory=list)  # with the reason
    missed: list[FixtureDrug] = field(default_factory=list)


@dataclass(slots=True)
class Coverage:
    drugs: dict[str, FixtureDrug]
    classes: list[ClassCoverage]
    unread: list[FixtureDrug]  # codes the ingredient map does not know (no clinical drug name)

    @property
    def missed(self) -> list[tuple[str, FixtureDrug]]:
        return [(c.id, drug) for c in self.classes for drug in c.missed]


def _policy(value_set_id: str) -> str:
    data = yaml.safe_load((VALUESETS / f"{value_set_id}.yaml").read_text(encoding="utf-8"))
    for ext in data.get("extension") or []:
        if ext.get("url") == "urn:cds-service:extension:ingredient-drugs":
            return str(ext["valueCode"])
    return "all"


def _names(drug: FixtureDrug, value_set: ValueSet) -> bool:
    return any(value_set.names_in(words(display)) for display in drug.displays)


def _why_not(drug: FixtureDrug, policy: str, known: IngredientMap) -> str | None:
    """Why the class's policy leaves a drug out, or None when it does not."""
    found = known.drugs.get(drug.code)
    if found is None:
        return None
    if policy in ("oral", "single-oral") and not found.oral:
        form = found.dose_form or "no dose form"
        return f"not an oral dose form ({form}): `ingredient-drugs: {policy}`"
    if policy == "systemic" and not found.systemic:
        form = found.dose_form or "no dose form"
        return f"applied where it acts ({form}): `ingredient-drugs: {policy}`"
    if policy in ("single", "single-oral") and found.components > 1:
        return f"a combination of {found.components} ingredients: `ingredient-drugs: {policy}`"
    return None


def coverage(fixtures: Path = FIXTURES) -> Coverage:
    """Every fixture code against every drug class."""
    sets, issues = load_value_sets(VALUESETS)
    if issues:
        raise SystemExit("the value sets do not load: " + "; ".join(map(str, issues)))
    known, _ = ingredient_map_for(VALUESETS)
    drugs = fixture_drugs(fixtures)
    classes = []
    for drug_class in CLASSES:
        value_set = sets[drug_class.id]
        result = ClassCoverage(drug_class.id, _policy(drug_class.id), drug_class.note)
        for drug in sorted(drugs.values(), key=lambda d: d.display.lower()):
            member = value_set.contains(RXNORM, drug.code)
            if member and (RXNORM, drug.code) in value_set.derived:
                result.derived.append(drug)
            elif member:
                result.listed.append(drug)
            elif _names(drug, value_set):
                reason = _why_not(drug, result.policy, known)
                if reason is None:
                    result.missed.append(drug)
                else:
                    result.excluded.append((drug, reason))
        classes.append(result)
    unread = sorted(
        (
            d
            for d in drugs.values()
            if d.code not in known.drugs and not known.is_ingredient(d.code)
        ),
        key=lambda d: d.display.lower(),
    )
    return Coverage(drugs, classes, unread)


def _row(drug: FixtureDrug, note: str = "") -> str:
    groups = ", ".join(sorted(drug.groups))
    tail = f" | {note}" if note else ""
    return f"| {drug.code} | {drug.display} | {drug.count} | {groups}{tail} |"


def _table(drugs: Iterable[FixtureDrug], how: str) -> list[str]:
    rows = [_row(d, how) for d in drugs]
    if not rows:
        return []
    return ["| RxCUI | display | occurrences | fixtures | how |", "|---|---|---|---|---|", *rows]


def render(found: Coverage) -> str:
    """The report, in Markdown."""
    occurrences = sum(d.count for d in found.drugs.values())
    lines = [
        "<!-- Generated by `python -m scripts.drug_coverage`: do not edit. -->",
        "# Drug value sets over the fixture drugs",
        "",
        f"The shared fixtures ({FIXTURES.name}/: the Synthea bundles of fhir-r4/, the bulk "
        "exports of bulk-ndjson/, the CDS Hooks examples of cds-hooks/) hold "
        f"{len(found.drugs)} distinct RxNorm codes ({occurrences} codings). Each drug class is "
        "read as the service loads it: its listed codes, and the drugs its ingredient entries "
        "take through the ingredient map (rules/_terminology/rxnorm-ingredients.tsv). A code "
        "*names* a class when one of its displays holds an ingredient name of the class; it "
        "must then be a member, unless the class's `ingredient-drugs` policy leaves it out for "
        "the reason given. `tests/terminology/test_drug_coverage.py` fails on any other.",
        "",
        "| class | policy | listed | through an ingredient | excluded | missed |",
        "|---|---|---|---|---|---|",
    ]
    for c in found.classes:
        lines.append(
            f"| {c.id} | {c.policy} | {len(c.listed)} | {len(c.derived)} | "
            f"{len(c.excluded)} | {len(c.missed)} |"
        )
    for c in found.classes:
        lines += ["", f"## {c.id}", ""]
        table = _table(c.listed, "listed") + [_row(d, "ingredient map") for d in c.derived]
        if c.derived and not c.listed:
            table = _table(c.derived, "ingredient map")
        lines += table or ["No fixture code is a member."]
        if c.note:
            lines += ["", f"Note: {c.note}"]
        if c.excluded:
            lines += ["", "Deliberately excluded:", ""]
            lines += [
                "| RxCUI | display | occurrences | fixtures | reason |",
                "|---|---|---|---|---|",
            ]
            lines += [_row(d, reason) for d, reason in c.excluded]
        if c.missed:
            lines += ["", "**Missed** (names a member ingredient, not a member):", ""]
            lines += _table(c.missed, "missed")
    lines += [
        "",
        "## Codes the ingredient map cannot read",
        "",
        "Their displays are not RxNorm clinical drug names (packs named by brand only, "
        "ingredient combinations): no class names them.",
        "",
        "| RxCUI | display | occurrences | fixtures |",
        "|---|---|---|---|",
        *(
            f"| {d.code} | {d.display} | {d.count} | {', '.join(sorted(d.groups))} |"
            for d in found.unread
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when the report is stale")
    args = parser.parse_args(list(argv) if argv is not None else None)
    found = coverage()
    text = render(found)
    for class_id, drug in found.missed:
        print(f"missed: {class_id}: {drug.code} {drug.display}", file=sys.stderr)
    if args.check:
        stale = not REPORT.exists() or REPORT.read_text(encoding="utf-8") != text
        if stale:
            print(f"{REPORT.relative_to(ROOT)} is out of date", file=sys.stderr)
        return 1 if stale or found.missed else 0
    REPORT.write_text(text, encoding="utf-8")
    print(f"wrote {REPORT.relative_to(ROOT)}")
    return 1 if found.missed else 0


if __name__ == "__main__":
    sys.exit(main())
