"""Python CDS services from plugins (entry point group ``cds_service.services``, see
`cds_service.plugins`): each plugin is a callable returning `ServiceDefinition`s, served beside
the rule services and the built-in ones. Checked each time the registry is built (at start-up
and on every rules reload): a plugin that returns something else stops the load, by name."""

from __future__ import annotations

from cds_service.plugins import SERVICES, PluginError, plugins
from cds_service.services.definition import ServiceDefinition

__all__ = ["plugin_services"]


def plugin_services() -> list[ServiceDefinition]:
    """Every plugin's services, in plugin-name order."""
    found: list[ServiceDefinition] = []
    for plugin in plugins(SERVICES):
        where = plugin.describe(SERVICES)
        if not callable(plugin.value):
            raise PluginError(f"{where}: not a callable returning services")
        try:
            services = plugin.value()
        except Exception as exc:
            raise PluginError(f"{where}: failed ({type(exc).__name__}: {exc})") from exc
        if not isinstance(services, list | tuple) or not all(
            isinstance(s, ServiceDefinition) for s in services
        ):
            raise PluginError(f"{where}: must return a list of ServiceDefinition")
        found.extend(services)
    return found
