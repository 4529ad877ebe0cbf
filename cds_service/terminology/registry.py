"""The value sets shipped with the service, loaded once and looked up by id.

Risk scores, the SMART view and the scores' prefetch read their code lists here, from the same
files the bundled rules use (`rules/_valuesets/`), so a code is a member for all of them or for
none. A wheel carries a copy of that directory (pyproject's `force-include`); a source checkout
reads it in place.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from cds_service.config import default_rules_dir
from cds_service.exceptions import ConfigurationError
from cds_service.terminology.valueset import ValueSet, load_value_sets

__all__ = ["VALUESETS_DIR", "bundled_directory", "bundled_value_sets", "value_set"]

VALUESETS_DIR = "_valuesets"  # inside a rules directory
_PACKAGED = Path(__file__).resolve().parent / VALUESETS_DIR


def bundled_directory() -> Path:
    """The shipped value sets: the wheel's copy when installed, else the checkout's rules."""
    return _PACKAGED if _PACKAGED.is_dir() else default_rules_dir() / VALUESETS_DIR


@functools.cache
def bundled_value_sets() -> Mapping[str, ValueSet]:
    """Every shipped value set, by id and by url; ConfigurationError if any file is broken."""
    directory = bundled_directory()
    sets, issues = load_value_sets(directory)
    if issues:
        raise ConfigurationError(
            f"the value sets in {directory} do not load: " + "; ".join(map(str, issues))
        )
    if not sets:
        raise ConfigurationError(f"no value sets in {directory}")
    return MappingProxyType(sets)


def value_set(value_set_id: str) -> ValueSet:
    """The shipped value set `value_set_id`; KeyError when there is none."""
    found = bundled_value_sets().get(value_set_id)
    if found is None:
        raise KeyError(f"unknown value set {value_set_id!r} (add it under rules/_valuesets/)")
    return found
