"""Input specifications and their validation, shared by every score.

Values arrive from the command line (strings such as ``"yes"`` or ``"5.2 mmol/L"``), from Python
callers (bool / int / float) or from the FHIR adapters (a Quantity-like ``{"value", "unit"}``
dict). `validate` converts them to canonical values and lists every problem found; it never
raises for bad input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cds_service.scores.units import CANONICAL, UnitError, convert

__all__ = ["InputSpec", "Validated", "display_unit", "validate"]

_TRUE = frozenset({"yes", "y", "true", "1", "on"})
_FALSE = frozenset({"no", "n", "false", "0", "off"})
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input of a score.

    `plausible` bounds what can be a real measurement (outside: "implausible"); `validated` bounds
    the range the score was derived in (outside: "outside the validated range"). Both inclusive.
    An optional input with a `default` is computed with that default and, when `note` is set, the
    note is added to the result's reason.
    """

    key: str
    help: str
    kind: Literal["number", "bool", "choice"]
    quantity: str | None = None
    plausible: tuple[float, float] | None = None
    validated: tuple[float, float] | None = None
    choices: Mapping[str, str] = field(default_factory=dict)
    required: bool = True
    default: Any = None
    note: str | None = None

    def describe(self) -> str:
        """Help text with unit and accepted values."""
        parts = [self.help]
        if self.kind == "bool":
            parts.append("yes/no")
        elif self.kind == "choice":
            parts.append("one of " + ", ".join(sorted(set(self.choices.values()))))
        elif self.quantity is not None:
            parts.append(f"number in {display_unit(self.quantity)}")
            if self.validated is not None:
                parts.append(f"validated range {_fmt(self.validated[0])}-{_fmt(self.validated[1])}")
        if not self.required:
            default = self.default
            if isinstance(default, bool):
                default = "yes" if default else "no"
            parts.append("optional" + (f", default {default}" if default is not None else ""))
        return "; ".join(parts)


@dataclass(slots=True)
class Validated:
    """Canonical values, the inputs as shown in the result, problems and notes."""

    values: dict[str, Any] = field(default_factory=dict)
    shown: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fmt(number: float) -> str:
    return f"{number:g}"


def display_unit(quantity: str | None) -> str:
    """The canonical unit of a quantity kind as shown in messages."""
    unit = CANONICAL[quantity] if quantity else ""
    return {"a": "years", "{score}": ""}.get(unit, unit)


def _jsonable(raw: Any) -> Any:
    if raw is None or isinstance(raw, bool | int | float | str):
        return raw
    if isinstance(raw, Mapping):
        return {str(k): _jsonable(v) for k, v in raw.items()}
    return str(raw)


def _as_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"expected yes/no, got {raw!r}")


def _as_choice(spec: InputSpec, raw: Any) -> str:
    if isinstance(raw, str):
        canonical = spec.choices.get(raw.strip().lower())
        if canonical is not None:
            return canonical
    accepted = ", ".join(sorted(set(spec.choices.values())))
    raise ValueError(f"expected one of {accepted}, got {raw!r}")


def _as_number(spec: InputSpec, raw: Any) -> float:
    assert spec.quantity is not None
    unit: str | None
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {raw!r}")
    if isinstance(raw, int | float):
        number, unit = float(raw), CANONICAL[spec.quantity]
    elif isinstance(raw, str):
        match = _NUMBER.match(raw)
        if match is None:
            raise ValueError(f"expected a number, got {raw!r}")
        number = float(match.group(1))
        unit = match.group(2) or CANONICAL[spec.quantity]
    elif isinstance(raw, Mapping):
        if raw.get("comparator"):
            raise ValueError(
                f"value is a bound ({raw['comparator']}{raw.get('value')}), not a number"
            )
        value = raw.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        number, unit = float(value), raw.get("unit")
    else:
        raise ValueError(f"expected a number, got {raw!r}")
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {raw!r}")
    try:
        return convert(spec.quantity, number, unit)
    except UnitError as exc:
        raise ValueError(str(exc)) from None


def _check_ranges(spec: InputSpec, number: float, out: Validated) -> None:
    unit = display_unit(spec.quantity)
    shown = f"{_fmt(round(number, 2))} {unit}".strip()
    if spec.plausible is not None and not spec.plausible[0] <= number <= spec.plausible[1]:
        low, high = (_fmt(b) for b in spec.plausible)
        plausible = f"{low}-{high} {unit}".rstrip()
        out.problems.append(f"implausible {spec.key} {shown} (plausible {plausible})")
    elif spec.validated is not None and not spec.validated[0] <= number <= spec.validated[1]:
        low, high = (_fmt(b) for b in spec.validated)
        out.problems.append(
            f"{spec.key} {shown} is outside the validated range {low}-{high} {unit}".rstrip()
        )


def validate(specs: tuple[InputSpec, ...], inputs: Mapping[str, Any]) -> Validated:
    """Convert and check `inputs` against `specs`."""
    out = Validated()
    known = {spec.key for spec in specs}
    unknown = sorted(str(key) for key in inputs if key not in known)
    if unknown:
        out.problems.append("unknown input(s): " + ", ".join(unknown))
    missing: list[str] = []
    for spec in specs:
        raw = inputs.get(spec.key)
        if raw is None:
            if spec.required:
                missing.append(spec.key)
            elif spec.default is not None:
                out.values[spec.key] = spec.default
                out.shown[spec.key] = spec.default
                if spec.note:
                    out.notes.append(spec.note)
            continue
        try:
            value: Any
            if spec.kind == "bool":
                value = _as_bool(raw)
            elif spec.kind == "choice":
                value = _as_choice(spec, raw)
            else:
                value = _as_number(spec, raw)
        except ValueError as exc:
            out.problems.append(f"{spec.key}: {exc}")
            out.shown[spec.key] = _jsonable(raw)
            continue
        if isinstance(value, float):
            _check_ranges(spec, value, out)
            out.shown[spec.key] = round(value, 4)
        else:
            out.shown[spec.key] = value
        out.values[spec.key] = value
    if missing:
        out.problems.insert(0, "missing input(s): " + ", ".join(missing))
    return out
