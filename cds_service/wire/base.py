"""Base classes shared by every wire model.

Python attributes are snake_case; the wire is camelCase (CDS Hooks' own spelling). Models that
*we emit* forbid unknown fields so a typo is a bug caught in tests; models that *we receive* ignore
unknown fields so that clients speaking a newer version of the specification still work.
"""

from __future__ import annotations

from typing import Any

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["InboundModel", "NoNul", "OutboundModel", "prune_empty"]


def _without_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


#: For a received string the service stores as it came: no database column of ours can hold NUL
#: (PostgreSQL's text refuses it), so it is refused at the boundary (400, naming the member)
#: rather than failing the write. `Annotated[StrictStr, NoNul]`.
NoNul = AfterValidator(_without_nul)


class InboundModel(BaseModel):
    """A model parsed from a client's JSON: lenient on unknown fields, strict on known ones."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )


class OutboundModel(BaseModel):
    """A model we emit. `wire()` gives the conformant JSON shape (no null or empty members)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON object for the wire: camelCase keys, null and empty members omitted."""
        dumped = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        pruned = prune_empty(dumped)
        return pruned if isinstance(pruned, dict) else {}


def prune_empty(value: Any) -> Any:
    """Drop `null`, `""`, `[]` and `{}` members recursively (CDS Hooks "Use of JSON").

    FHIR resources carried inside cards follow the same rule (FHIR JSON forbids empty values too).
    Returns ``None`` when the value itself is empty, so callers can drop it.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            pruned = prune_empty(item)
            if pruned is not None:
                out[key] = pruned
        return out or None
    if isinstance(value, list):
        items = [p for p in (prune_empty(item) for item in value) if p is not None]
        return items or None
    if value is None or value == "":
        return None
    return value
