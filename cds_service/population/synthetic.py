"""One source patient's record turned into as many synthetic patients as asked, fast.

A `Template` is compiled once per source patient: each resource's JSON is cut into literal
bytes and *tokens* — the places a copy changes:

- an id of one of the record's resources (a UUID anywhere in the text; for ids that are not
  UUIDs, the ``id``/``value`` members equal to one and the id part of ``reference`` members):
  the copy's id is derived from (seed, k, old id);
- a date, dateTime or instant (a whole JSON string ``YYYY-MM-DD[Thh:mm[:ss[.f]][zone]]``
  anywhere; ``YYYY-MM`` and ``YYYY`` only as the value of a date-like member such as
  ``birthDate``, ``…Date``, ``…DateTime``, ``start``, ``end``): shifted by the copy's number of
  days, the rest of the text (time of day, zone, precision) kept as written;
- in the Patient, the given and family names, and the identifier, telephone and address-line
  values (their digits redrawn; an identifier that is a resource id is an id token);
- an Observation's numeric ``valueQuantity.value`` (also in ``component``): jittered;
- the patient's old name where another resource shows it (a reference's ``display``).

A copy (`render`) is then a join of literals and rendered tokens: no parsing, no regular
expression per copy. Random draws come from a generator seeded by (seed, k), in a fixed order,
so the same template, seed and k give the same bytes.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson

__all__ = ["JITTER", "SHIFT_DAYS", "Template"]

JITTER = 0.04  # the largest relative change of an Observation's numeric value
SHIFT_DAYS = (-3 * 365, 365)  # the range of a patient's date shift (zero excluded)

_GIVEN_FEMALE = (
    "Alice", "Beatrice", "Carmen", "Dana", "Elena", "Fatima", "Grace", "Hana", "Ines", "Joan",
    "Keiko", "Laura", "Maria", "Nadia", "Olga", "Priya", "Rosa", "Sofia", "Tara", "Yara",
)  # fmt: skip
_GIVEN_MALE = (
    "Adam", "Bruno", "Carlos", "David", "Emil", "Felix", "George", "Hugo", "Ivan", "Jamal",
    "Kenji", "Luis", "Marco", "Nikhil", "Omar", "Pavel", "Rafael", "Samuel", "Tomas", "Victor",
)  # fmt: skip
_FAMILY = (
    "Alvarez", "Baker", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Lopez", "Moreau", "Nguyen", "Okafor", "Patel", "Quinn", "Rossi",
    "Silva", "Tanaka", "Usman", "Varga", "Weber", "Xu", "Yilmaz", "Zhang",
)  # fmt: skip

_UUID = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_ID_MEMBER = re.compile(rb'"(reference|id|value)":"([^"\\]*)"')
_DATE = re.compile(
    rb'"(\d{4})(?:-(\d{2})(?:-(\d{2})(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)?)?"'
)
_DATE_KEYS = frozenset(
    {b"date", b"start", b"end", b"issued", b"recorded", b"created", b"authoredOn", b"lastUpdated"}
)
# A value set aside while the JSON is written, found again as a token: "\u0000<n>\u0000".
_MARK = "\x00{}\x00"
_MARKED = re.compile(rb'"\\u0000(\d+)\\u0000"')
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True, slots=True)
class _Token:
    """A place a copy rewrites: `kind` says how, `value` what was there (or where)."""

    kind: str  # id | date | partial | given | family | redraw | jitter | name
    value: Any


Part = bytes | _Token


def _key_before(text: bytes, start: int) -> bytes | None:
    """The member name whose value starts at `start` (`"key":"…`), if any."""
    if text[start - 2 : start] != b'":':
        return None
    opening = text.rfind(b'"', 0, start - 2)
    return text[opening + 1 : start - 2] if opening >= 0 else None


def _date_like(key: bytes | None) -> bool:
    if key is None:
        return False
    return key in _DATE_KEYS or key.endswith((b"Date", b"DateTime", b"Instant"))


def _display(given: list[str], family: str | None) -> str:
    return " ".join([*given, family] if family else given)


@dataclass(frozen=True, slots=True)
class _Name:
    given: int  # how many given names
    family: bool
    old: bytes  # the old display, "Given Family"


@dataclass(frozen=True, slots=True)
class Template:
    """A source patient's record compiled for copying (module docstring)."""

    lines: tuple[tuple[str, tuple[Part, ...]], ...]  # (resourceType, parts), the Patient first
    names: tuple[_Name, ...]
    female: bool

    @classmethod
    def of(cls, record: list[dict[str, Any]]) -> Template:
        """Compile `record` (its dicts are changed: pass a record read for this)."""
        ids = {i for r in record if isinstance(i := r.get("id"), str) and i}
        plain = all(_UUID_TEXT.fullmatch(i) for i in ids)
        id_bytes = {i.encode() for i in ids}
        names: list[_Name] = []
        female = False
        lines: list[tuple[str, tuple[Part, ...]]] = []
        for resource in record:
            marks: list[_Token] = []
            resource_type = resource["resourceType"]
            if resource_type == "Patient" and not names:
                female = resource.get("gender") == "female"
                names = _mark_patient(resource, marks)
            elif resource_type == "Observation":
                _mark_observation(resource, marks)
            text = orjson.dumps(resource)
            spans = _spans(text, marks, id_bytes, plain, names)
            lines.append((resource_type, _cut(text, spans)))
        return cls(tuple(lines), tuple(names), female)

    def render(self, seed: int, k: int) -> Iterator[tuple[str, bytes]]:
        """Synthetic patient `k`: (resourceType, JSON) of each of its resources."""
        copy = _Copy(self, seed, k)
        for resource_type, parts in self.lines:
            yield (
                resource_type,
                b"".join(part if isinstance(part, bytes) else copy.token(part) for part in parts),
            )


def _mark(marks: list[_Token], token: _Token) -> str:
    marks.append(token)
    return _MARK.format(len(marks) - 1)


def _mark_patient(patient: dict[str, Any], marks: list[_Token]) -> list[_Name]:
    names: list[_Name] = []
    for name in _dicts(patient.get("name")):
        given = [g for g in name.get("given") or [] if isinstance(g, str)]
        family = name.get("family") if isinstance(name.get("family"), str) else None
        index = len(names)
        names.append(_Name(len(given), family is not None, _display(given, family).encode()))
        name["given"] = [_mark(marks, _Token("given", (index, j))) for j in range(len(given))]
        if family is not None:
            name["family"] = _mark(marks, _Token("family", index))
        name.pop("text", None)
    for member in ("identifier", "telecom"):
        for item in _dicts(patient.get(member)):
            value = item.get("value")
            if isinstance(value, str) and not _UUID_TEXT.fullmatch(value):
                item["value"] = _mark(marks, _Token("redraw", value))
    for address in _dicts(patient.get("address")):
        lines = address.get("line")
        if isinstance(lines, list):
            address["line"] = [
                _mark(marks, _Token("redraw", x)) if isinstance(x, str) else x for x in lines
            ]
    return names


def _mark_observation(observation: dict[str, Any], marks: list[_Token]) -> None:
    for holder in [observation, *_dicts(observation.get("component"))]:
        quantity = holder.get("valueQuantity")
        value = quantity.get("value") if isinstance(quantity, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert isinstance(quantity, dict)
            quantity["value"] = _mark(marks, _Token("jitter", value))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _spans(
    text: bytes, marks: list[_Token], ids: set[bytes], plain: bool, names: list[_Name]
) -> list[tuple[int, int, _Token]]:
    spans = [(m.start(), m.end(), marks[int(m.group(1))]) for m in _MARKED.finditer(text)]
    spans += [(m.start(), m.end(), _Token("id", m.group())) for m in _UUID.finditer(text)]
    if not plain:
        spans += _member_ids(text, ids)
    spans = [s for s in spans if s[2].kind != "id" or s[2].value in ids]
    for m in _DATE.finditer(text):
        year, month, day, rest = m.groups()
        if day is not None:
            full = (int(year), int(month), int(day), rest or b"")
            spans.append((m.start() + 1, m.end() - 1, _Token("date", full)))
        elif _date_like(_key_before(text, m.start())):
            partial = (int(year), int(month) if month else None)
            spans.append((m.start() + 1, m.end() - 1, _Token("partial", partial)))
    for index, name in enumerate(names):
        if len(name.old) < 3:
            continue
        start = text.find(name.old)
        while start >= 0:
            spans.append((start, start + len(name.old), _Token("name", index)))
            start = text.find(name.old, start + len(name.old))
    return spans


def _member_ids(text: bytes, ids: set[bytes]) -> list[tuple[int, int, _Token]]:
    found = []
    for m in _ID_MEMBER.finditer(text):
        start, end = m.span(2)
        value = m.group(2)
        if m.group(1) == b"reference":
            tail = value.removeprefix(b"urn:uuid:").rpartition(b"/")[2]
            start = end - len(tail)
            value = tail
        if value in ids:
            found.append((start, end, _Token("id", value)))
    return found


def _cut(text: bytes, spans: list[tuple[int, int, _Token]]) -> tuple[Part, ...]:
    parts: list[Part] = []
    position = 0
    for start, end, token in sorted(spans, key=lambda s: (s[0], -s[1])):
        if start < position:  # inside a span already cut (a date in a marked value)
            continue
        if start > position:
            parts.append(text[position:start])
        parts.append(token)
        position = end
    if position < len(text):
        parts.append(text[position:])
    return tuple(parts)


def _new_id(seed: int, k: int, old: bytes) -> bytes:
    digest = hashlib.blake2b(b"%d:%d:%s" % (seed, k, old), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4)).encode()


class _Copy:
    """The random choices of synthetic patient `k` and the rendering of tokens with them."""

    def __init__(self, template: Template, seed: int, k: int) -> None:
        self.seed, self.k = seed, k
        self.rng = random.Random(f"{seed}:{k}")
        low, high = SHIFT_DAYS
        days = self.rng.randint(low, high - 1)
        self.days = days + 1 if days >= 0 else days
        pool = _GIVEN_FEMALE if template.female else _GIVEN_MALE
        self.given = [[self.rng.choice(pool) for _ in range(n.given)] for n in template.names]
        self.family = [self.rng.choice(_FAMILY) if n.family else None for n in template.names]
        self.ids: dict[bytes, bytes] = {}
        self.dates: dict[tuple[Any, ...], bytes] = {}

    def token(self, token: _Token) -> bytes:
        kind, value = token.kind, token.value
        if kind == "id":
            new: bytes | None = self.ids.get(value)
            if new is None:
                new = self.ids[value] = _new_id(self.seed, self.k, value)
            return new
        if kind in ("date", "partial"):
            shifted = self.dates.get(value)
            if shifted is None:
                shifted = self.dates[value] = self._shift(kind, value)
            return shifted
        if kind == "given":
            return orjson.dumps(self.given[value[0]][value[1]])
        if kind == "family":
            return orjson.dumps(self.family[value])
        if kind == "name":
            return orjson.dumps(_display(self.given[value], self.family[value]))[1:-1]
        if kind == "redraw":
            return orjson.dumps(_DIGIT.sub(lambda _: str(self.rng.randrange(10)), value))
        return orjson.dumps(self._jitter(value))

    def _shift(self, kind: str, value: tuple[Any, ...]) -> bytes:
        if kind == "date":
            year, month, day = value[:3]
            rest: bytes = value[3]
            try:
                shifted = date(year, month, day) + timedelta(days=self.days)
            except (ValueError, OverflowError):  # not a real day, or out of range: kept
                return b"%04d-%02d-%02d%s" % (year, month, day, rest)
            return shifted.isoformat().encode() + rest
        year, month = value
        if month is None:
            moved = year + round(self.days / 365.25)
            return b"%04d" % (moved if 1 <= moved <= 9999 else year)
        months = year * 12 + month - 1 + round(self.days / 30.4375)
        if not 1 <= months // 12 <= 9999:
            return b"%04d-%02d" % (year, month)
        return b"%04d-%02d" % (months // 12, months % 12 + 1)

    def _jitter(self, value: int | float) -> int | float:
        changed = value * (1 + self.rng.uniform(-JITTER, JITTER))
        if isinstance(value, int):
            return round(changed)
        text = repr(value)
        decimals = len(text.split(".", 1)[1]) if "." in text and "e" not in text else 6
        return round(changed, decimals)
