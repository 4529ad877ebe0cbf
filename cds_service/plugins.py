"""Plugins: what other installed packages add to the engine, through Python entry points.

A team extends cds-service in its own package, without editing this one, by declaring entry
points in its `pyproject.toml` (an example package lives in `examples/cds-plugin-example/`):

- ``cds_service.scores``: a risk score, a class (instantiated without arguments) or an instance
  following `cds_service.scores.RiskScore` (name, title, unit, specs, compute, inputs_from_fhir);
  the entry point's name must be the score's `name`. Rules then use it in `scores:` and
  `%scores.<name>` like a built-in one, and precompute computes it.
- ``cds_service.fhirpath_functions``: a FHIRPath function for rules, in fhirpathpy's form (a dict
  with ``fn``, the Python function, and ``arity``, e.g. ``{0: []}`` or ``{1: ["Integer"]}``); the
  entry point's name is the function's name in expressions.
- ``cds_service.services``: Python CDS services, a callable returning a list of
  `cds_service.services.definition.ServiceDefinition`, served beside the rule services.

Plugins load once per process. A plugin that cannot be imported, has the wrong shape, or takes a
name already in use stops the service at start-up (`PluginError` naming the entry point and the
package), never silently: a rule would otherwise refer to something that is not there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

__all__ = ["FUNCTIONS", "GROUPS", "SCORES", "SERVICES", "Plugin", "PluginError", "plugins"]

SCORES = "cds_service.scores"
FUNCTIONS = "cds_service.fhirpath_functions"
SERVICES = "cds_service.services"
GROUPS = (SCORES, FUNCTIONS, SERVICES)


class PluginError(Exception):
    """A plugin that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Plugin:
    """One loaded entry point: its name, what it loaded, and the package that declared it."""

    name: str
    value: Any
    package: str

    def describe(self, group: str) -> str:
        return f"plugin '{self.name}' ({group}, from package {self.package})"


def _package(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return str(getattr(dist, "name", None) or entry.value.split(":", 1)[0])


@functools.cache
def plugins(group: str) -> tuple[Plugin, ...]:
    """The group's plugins, loaded, by name; PluginError for one that does not import or is
    declared twice."""
    if group not in GROUPS:
        raise ValueError(f"unknown plugin group {group!r}")
    found: dict[str, Plugin] = {}
    for entry in sorted(entry_points(group=group), key=lambda e: e.name):
        package = _package(entry)
        if entry.name in found:
            raise PluginError(
                f"plugin '{entry.name}' ({group}) is declared by both {found[entry.name].package} "
                f"and {package}"
            )
        try:
            value = entry.load()
        except Exception as exc:  # any import-time failure of someone else's package
            raise PluginError(
                f"plugin '{entry.name}' ({group}, from package {package}) does not load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        found[entry.name] = Plugin(entry.name, value, package)
    return tuple(found.values())
