"""FHIRPath functions from plugins (entry point group ``cds_service.fhirpath_functions``, see
`cds_service.plugins`), checked once per process: fhirpathpy's form (``fn`` callable, ``arity``
a mapping of argument count to argument types), and a name that shadows no FHIRPath function
nor one of ours (`memberOf`, `drug`, `single`, the fixed conformance functions)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from fhirpathpy.engine.invocations import invocation_registry

from cds_service.plugins import FUNCTIONS, PluginError, plugins
from cds_service.rules.conformance import FUNCTIONS as FIXED_FUNCTIONS

__all__ = ["OWN_FUNCTIONS", "plugin_functions"]

#: Ours, besides the fixed conformance functions (rules/valuesets.py).
OWN_FUNCTIONS = frozenset({"memberOf", "drug", "single"})


@functools.cache
def plugin_functions() -> Mapping[str, Any]:
    """The plugins' functions by name, in fhirpathpy's user-invocation form."""
    taken = set(invocation_registry) | set(FIXED_FUNCTIONS) | OWN_FUNCTIONS
    found: dict[str, Any] = {}
    for plugin in plugins(FUNCTIONS):
        where = plugin.describe(FUNCTIONS)
        if plugin.name in taken:
            raise PluginError(f"{where}: '{plugin.name}' is already a FHIRPath function")
        value = plugin.value
        if not isinstance(value, Mapping) or not callable(value.get("fn")):
            raise PluginError(f"{where}: not a function entry (a dict with a callable 'fn')")
        arity = value.get("arity", {0: []})
        if not isinstance(arity, Mapping) or not all(
            isinstance(count, int) and isinstance(types, list) for count, types in arity.items()
        ):
            raise PluginError(f"{where}: 'arity' maps an argument count to a list of types")
        found[plugin.name] = {"fn": value["fn"], "arity": dict(arity)}
    return found
