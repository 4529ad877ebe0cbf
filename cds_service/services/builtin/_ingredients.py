"""The active ingredients of a MedicationRequest, read from RxNorm names.

RxNorm names its drugs by a fixed grammar, which is what makes the ingredients readable without a
terminology server:

- an ingredient (IN, PIN) or multiple-ingredient concept (MIN) has no strength: `lisinopril`,
  `warfarin sodium`, `hydrochlorothiazide / lisinopril`;
- a clinical drug (SCD) lists each component as `<ingredient> <strength> <unit>`, separated by
  ` / `, then the dose form: `hydrochlorothiazide 12.5 MG / lisinopril 10 MG Oral Tablet`,
  optionally after a quantity or release prefix (`0.4 ML`, `12 HR`, `Abuse-Deterrent`);
- a branded drug (SBD) is the clinical drug's name with the brand in brackets, and a pack (GPCK,
  BPCK) nests clinical drug names in braces and parentheses.

So the ingredients of an order are read from the `display` of its RxNorm codings and from its
`text`, accepting only names of these shapes: a name with a strength must have every component in
`<words> <number> <UNIT>` form (`Drug 617993` or `amoxicillin 500mg caps` yield nothing), and a
name without a digit is taken as ingredients only when it comes from an RxNorm coding. Salt and
ester words after the first word are dropped (`warfarin sodium` and `warfarin` are one
ingredient, `potassium chloride` stays `potassium`), so the IN, PIN, SCD and SBD names of a drug
agree. An order named only in free text, or coded without displays, has no ingredients here and
is compared by code alone.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["ingredients"]

_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
# salts, esters and hydrates RxNorm writes after the base name (precise ingredients)
_SALT_WORDS = frozenset(
    {
        "acetate",
        "anhydrous",
        "benzoate",
        "besylate",
        "bitartrate",
        "bromide",
        "calcium",
        "camsylate",
        "carbonate",
        "chloride",
        "cilexetil",
        "citrate",
        "decanoate",
        "dihydrate",
        "dipotassium",
        "disodium",
        "dipropionate",
        "etexilate",
        "fumarate",
        "gluconate",
        "hcl",
        "hemifumarate",
        "hyclate",
        "hydrobromide",
        "hydrochloride",
        "hydrate",
        "lactate",
        "magnesium",
        "maleate",
        "medoxomil",
        "mesylate",
        "monohydrate",
        "nitrate",
        "oxalate",
        "pamoate",
        "phosphate",
        "potassium",
        "propionate",
        "sodium",
        "succinate",
        "sulfate",
        "tartrate",
        "tosylate",
        "trihydrate",
        "valerate",
    }
)
_PREFIX = re.compile(r"^(?:abuse-deterrent\s+)?(?:\d[\d.]*\s+(?:hr|ml|actuat|day)\s+)+", re.I)
_BRAND = re.compile(r"\s*\[[^\]]*\]")
_COMPONENT = re.compile(r"^([a-z][a-z ,'\-]*?)\s+\d[\d.]*\s+(?:[a-z]+(?:/[a-z]+)?|%)(?=\s|$)", re.I)
_NAME = re.compile(r"^[a-z][a-z ,'\-]*$", re.I)


def _normalise(name: str) -> str | None:
    words = re.findall(r"[a-z]+(?:-[a-z]+)*", name.lower())
    if not words:
        return None
    return " ".join([words[0], *(w for w in words[1:] if w not in _SALT_WORDS)])


def _from_name(name: str, *, coded: bool) -> set[str]:
    """The ingredients an RxNorm-style name lists; empty when it is not of that shape."""
    text = _BRAND.sub("", name).strip()
    if not text:
        return set()
    if "{" in text:  # a pack: {21 (drug A) / 7 (drug B) } Pack -> drug A, drug B
        found: set[str] = set()
        for inner in re.findall(r"\(([^()]+)\)", text):
            found |= _from_name(inner, coded=coded)
        return found
    if not re.search(r"\d", text):
        if not coded:
            return set()  # free text without a strength is not an RxNorm name
        parts = [p.strip() for p in text.split(" / ")]
        if not all(_NAME.match(p) for p in parts):
            return set()
        return {n for p in parts if (n := _normalise(p))}
    found = set()
    for part in _PREFIX.sub("", text).split(" / "):
        match = _COMPONENT.match(part.strip())
        if match is None:
            return set()
        if name_ := _normalise(match.group(1)):
            found.add(name_)
    return found


def ingredients(med_request: dict[str, Any]) -> set[str]:
    """The normalised active ingredients of a MedicationRequest's medicationCodeableConcept."""
    concept = med_request.get("medicationCodeableConcept")
    if not isinstance(concept, dict):
        return set()
    found: set[str] = set()
    entries = concept.get("coding")
    for coding in entries if isinstance(entries, list) else []:
        if isinstance(coding, dict) and coding.get("system") == _RXNORM:
            display = coding.get("display")
            if isinstance(display, str):
                found |= _from_name(display, coded=True)
    text = concept.get("text")
    if not found and isinstance(text, str):
        found = _from_name(text, coded=False)
    return found
