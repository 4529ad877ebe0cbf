"""FHIR XML → the JSON a FHIR server sends (as Python values), for the HL7 suite's inputs.

As much of the FHIR XML ↔ JSON mapping as the suite's example resources need:

- element types come from fhirpathpy's R4 model (the model the evaluator uses), so `boolean`,
  `integer`, `decimal`… become JSON booleans and numbers;
- whether an element is an array comes from the fhir.resources R4B models (R4's cardinalities
  for these resources); fhirpathpy does care, e.g. `extension('url')` needs an array;
- a primitive's `id` and `extension` go to `_name`; `contained`/`resource` hold a resource;
  `div` is the XHTML text.

Checked against the repository's own JSON of patient-example and questionnaire-example (equal
apart from the narrative's whitespace).
"""

from __future__ import annotations

import functools
import json
import typing
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy.models import models

__all__ = ["load_resource"]

FHIR = "{http://hl7.org/fhir}"
XHTML = "http://www.w3.org/1999/xhtml"
_MODEL: Mapping[str, Any] = models["r4"]
_NUMBERS = {"integer", "positiveInt", "unsignedInt", "decimal", "Integer", "Decimal"}
_PARENTS = ("Element", "BackboneElement", "DomainResource", "Resource")
_ALWAYS_ARRAYS = {"extension", "modifierExtension", "contained"}


def load_resource(path: Path) -> dict[str, Any]:
    """A suite input as JSON: `.json` files are read, `.xml` files converted."""
    if path.suffix == ".json":
        result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return result
    return _resource(ET.parse(path).getroot())


def _tag(element: ET.Element) -> str:
    return element.tag.removeprefix(FHIR)


def _resource(element: ET.Element) -> dict[str, Any]:
    kind = _tag(element)
    return {"resourceType": kind, **_children(element, kind, get_fhir_model_class(kind))}


def _type(path: str, name: str) -> tuple[str, str | None]:
    """(the path that types this element's children, its type) from fhirpathpy's model."""
    full = f"{path}.{name}"
    full = _MODEL["pathsDefinedElsewhere"].get(full, full)
    kind = _MODEL["path2Type"].get(full)
    if kind is None:
        kind = next(
            (
                _MODEL["path2Type"][f"{p}.{name}"]
                for p in _PARENTS
                if f"{p}.{name}" in _MODEL["path2Type"]
            ),
            None,
        )
    if kind in ("BackboneElement", "Element"):
        return full, kind
    return (kind or full), kind


@functools.cache
def _field(model: type | None, name: str) -> tuple[bool, type | None]:
    """(is it an array, the model of its items) for an element of a fhir.resources model."""
    if model is None:
        return name in _ALWAYS_ARRAYS, None
    fields = getattr(model, "model_fields", {})
    field = fields.get(name) or next((f for f in fields.values() if f.alias == name), None)
    if field is None:
        return name in _ALWAYS_ARRAYS, None
    return "List[" in repr(field.annotation), _inner(field.annotation)


def _inner(annotation: Any) -> type | None:
    for argument in typing.get_args(annotation):
        if hasattr(argument, "get_model_klass"):
            klass: type = argument.get_model_klass()
            return klass
        found = _inner(argument)
        if found is not None:
            return found
    return None


def _primitive(text: str, kind: str | None) -> Any:
    kind = (kind or "").removeprefix("System.")
    if kind.lower() == "boolean":
        return text == "true"
    if kind in _NUMBERS:
        return int(text) if text.lstrip("-").isdigit() else float(text)
    return text


def _is_primitive(element: ET.Element, kind: str | None) -> bool:
    if "value" in element.attrib:
        return True
    return (
        kind is not None and (kind.startswith("System.") or kind[0].islower()) and kind != "xhtml"
    )


def _children(element: ET.Element, path: str, model: type | None) -> dict[str, Any]:
    """An element's content as a JSON object; `path` and `model` type its children."""
    out: dict[str, Any] = {}
    for attribute in ("id", "url"):  # a resource's id is a child element, not an attribute
        if attribute in element.attrib:
            out[attribute] = element.attrib[attribute]
    groups: dict[str, list[ET.Element]] = {}
    for child in element:
        if isinstance(child.tag, str):  # not an XML comment
            groups.setdefault(_tag(child), []).append(child)
    for name, elements in groups.items():
        if name == f"{{{XHTML}}}div":
            ET.register_namespace("", XHTML)
            out["div"] = ET.tostring(elements[0], encoding="unicode").strip()
            continue
        child_path, kind = _type(path, name)
        array, child_model = _field(model, name)
        array = array or len(elements) > 1
        if name in ("contained", "resource") or kind == "Resource":
            values: list[Any] = [_resource(e[0]) for e in elements]
        elif _is_primitive(elements[0], kind):
            values = [
                _primitive(e.attrib["value"], kind) if "value" in e.attrib else None
                for e in elements
            ]
            extras = [_children(e, child_path, None) or None for e in elements]
            if any(x is not None for x in extras):
                out[f"_{name}"] = extras if array else extras[0]
            if all(v is None for v in values):
                continue
        else:
            values = [_children(e, child_path, child_model) for e in elements]
        out[name] = values if array else values[0]
    return out
