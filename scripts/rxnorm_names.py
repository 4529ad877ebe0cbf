"""Reading RxNorm normalized drug names: term type, dose form and active ingredients.

    >>> name = parse_drug("apixaban 5 MG Oral Tablet [Eliquis]")
    >>> name.tty, name.dose_form, name.components
    ('SBD', 'Oral Tablet', ('apixaban',))

RxNorm names its clinical drugs by rule: `[quantity] [qualifier] <ingredient> <strength> <unit>
[/ <ingredient> <strength> <unit>…] <dose form> [<brand>]` (SCD, SBD), packs as `{<n> (<drug>)
[/ <n> (<drug>)…] } Pack [<brand>]` (GPCK, BPCK), a strength without a dose form (SCDC) as
Synthea codes some drugs. `scripts/drug_terminology.py` reads the names of public value set
expansions with this to build the ingredient map; nothing reads names at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DrugName", "name_words", "parse_drug", "starts_with"]

# `24 HR`, `0.4 ML`, `120 ACTUAT` (quantity factors), `Abuse-Deterrent`, `NDA020503` (Synthea),
# and the qualitative distinctions written before a quantity (`Osmotic 24 HR`, `3-Month 1.5 ML`).
_PREFIX = re.compile(
    r"^(?:[A-Z]{2,4}\d{5,}\s+|Abuse-Deterrent\s+|\d[\d.]*\s+[A-Z]+\s+"
    r"|(?:\S+\s+){1,2}?(?=\d[\d.]*\s+(?:HR|ML|ACTUAT|DAY)\s))"
)
_QUANTITY = re.compile(r"^\d[\d.]*\s+[A-Z]+$")
# `<ingredient> <number> <UNIT>` then, in the last component, the dose form.
_COMPONENT = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<number>\d[\d.]*)\s+(?P<unit>[A-Z]+(?:/[A-Z]+)*)(?:\s+(?P<rest>.+))?$"
)
_BRAND = re.compile(r"\s*\[([^\[\]]+)\]$")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class DrugName:
    """A parsed clinical drug name."""

    tty: str  # SCD, SBD, GPCK, BPCK or SCDC
    dose_form: str  # `Oral Tablet`; a pack's distinct forms joined by ` + `; "" for SCDC
    components: tuple[str, ...]  # the ingredient names, lower case, in the name's order


def name_words(name: str) -> tuple[str, ...]:
    """The words of an ingredient name as they are compared (lower case letters and digits)."""
    return tuple(_WORD.findall(name.lower()))


def starts_with(component: str, ingredient: str) -> bool:
    """True when the ingredient's words begin the component's: `warfarin` begins `warfarin
    sodium`, `penicillin V` begins `penicillin V potassium`, `amphetamine` does not begin
    `dextroamphetamine`."""
    words, wanted = name_words(component), name_words(ingredient)
    return bool(wanted) and words[: len(wanted)] == wanted


def _pack(name: str, branded: bool) -> DrugName | None:
    inside = name[name.index("{") + 1 : name.rindex("}")]
    drugs: list[DrugName] = []
    depth, start = 0, -1
    for position, char in enumerate(inside):
        if char == "(":
            if depth == 0:
                start = position + 1
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0 and start >= 0:
                if _QUANTITY.match(inside[start:position].strip()):
                    continue  # `(0.1 ML)`: the quantity of the drug that follows
                drug = parse_drug(inside[start:position])
                if drug is None or drug.tty not in ("SCD", "SBD"):
                    return None
                drugs.append(drug)
    if not drugs:
        return None
    components = tuple(dict.fromkeys(c for d in drugs for c in d.components))
    forms = " + ".join(sorted({d.dose_form for d in drugs}))
    return DrugName("BPCK" if branded else "GPCK", forms, components)


def parse_drug(display: str) -> DrugName | None:
    """The term type, dose form and ingredients of a clinical drug's RxNorm name; None for a
    name that is not a clinical drug's (an ingredient, a brand, a dose form group) or that does
    not follow RxNorm's grammar."""
    name = " ".join(display.split())
    brand = _BRAND.search(name)
    branded = brand is not None
    if name.startswith("{") and "}" in name:
        return _pack(name, branded)
    if brand is not None:
        name = name[: brand.start()]
    while (prefix := _PREFIX.match(name)) is not None:
        name = name[prefix.end() :]
    parts = name.split(" / ")
    components: list[str] = []
    dose_form = ""
    for index, part in enumerate(parts):
        match = _COMPONENT.match(part.strip())
        if match is None:
            return None
        rest = match.group("rest")
        if rest and index < len(parts) - 1:
            return None  # a dose form in the middle: not a drug name
        components.append(" ".join(match.group("name").lower().split()))
        dose_form = rest or ""
    if dose_form and not dose_form[:1].isupper():
        return None
    if not dose_form:
        return None if branded else DrugName("SCDC", "", tuple(components))
    return DrugName("SBD" if branded else "SCD", dose_form, tuple(components))
