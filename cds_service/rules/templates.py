"""Logic-less card templates: `{{name}}` inserts the value of the binding `name`.

No expressions, loops or filters: what a card says is computed in the rule's `let` bindings, where
it can be tested and explained. Names are checked when rules load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["TEMPLATE_NAME", "render_text", "render_value", "template_names", "unwrap"]

TEMPLATE_NAME = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*)\s*\}\}")
_WHOLE = re.compile(r"^\{\{\s*([A-Za-z][A-Za-z0-9_]*)\s*\}\}$")
_BRACES = re.compile(r"\{\{|\}\}")


def template_names(text: str) -> tuple[list[str], bool]:
    """The names a text uses, and whether its braces are all well-formed `{{name}}`."""
    names = TEMPLATE_NAME.findall(text)
    leftover = _BRACES.search(TEMPLATE_NAME.sub("", text))
    return names, leftover is None


def unwrap(value: Any) -> Any:
    """A FHIRPath result as one value: one item → the item, none → None, several → the list."""
    if isinstance(value, list):
        if not value:
            return None
        if len(value) == 1:
            return unwrap(value[0])
        return [unwrap(v) for v in value]
    return value


def _text(value: Any) -> str:
    value = unwrap(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | Decimal):
        return format(float(value), ".10g")
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        for key in ("display", "text", "value"):
            if isinstance(value.get(key), str | int | float):
                return _text(value[key])
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def render_text(text: str, bindings: Mapping[str, Any]) -> str:
    """Replace every `{{name}}` with the binding's value as text."""
    return TEMPLATE_NAME.sub(lambda m: _text(bindings.get(m.group(1))), text)


def _json_value(value: Any) -> Any:
    value = unwrap(value)
    if isinstance(value, dict | list | str | int | bool) or value is None:
        return value
    if isinstance(value, float | Decimal):
        return float(value)
    return str(value)


def render_value(template: Any, bindings: Mapping[str, Any]) -> Any:
    """Render a JSON template (a FHIR resource in a suggestion).

    A string that is exactly `{{name}}` becomes the binding's value itself (a number, an object,
    a list); other strings are rendered as text.
    """
    if isinstance(template, dict):
        return {k: render_value(v, bindings) for k, v in template.items()}
    if isinstance(template, list):
        return [render_value(v, bindings) for v in template]
    if isinstance(template, str):
        whole = _WHOLE.match(template)
        if whole:
            return _json_value(bindings.get(whole.group(1)))
        return render_text(template, bindings)
    return template
