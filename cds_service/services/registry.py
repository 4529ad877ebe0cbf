"""The service registry: what discovery lists and what `POST /cds-services/{id}` dispatches to.

Built once at start-up from service definitions (the built-in services today, YAML rules later)
and checked then, so a bad definition stops the service from starting instead of failing a call.

The specification lets one service id appear once per hook it serves, but some clients (the CDS
Hooks Sandbox among them) key services by id alone and keep only the last hook of each, and EHR
registration screens assume one hook per URL. So by default (`CDS_DISCOVERY_IDS=per-hook`) each
(service, hook) pair is advertised under its own id `{service}-{hook}`; `shared` advertises the
service's own id once per hook. Both forms are always accepted on calls (a shared id dispatches
on the request's `hook`), so switching does not break an EHR registered under the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cds_service.exceptions import ConfigurationError
from cds_service.prefetch.templates import check_template
from cds_service.services.definition import ServiceDefinition
from cds_service.wire.contexts import hook_spec
from cds_service.wire.discovery import ServiceDescriptor

__all__ = ["Endpoint", "ServiceRegistry", "per_hook_id", "shared_id"]

_SERVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PREFETCH_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a `/cds-services/{id}` URL reaches: a service, pinned to one hook for per-hook ids."""

    service: ServiceDefinition
    hook: str | None = None


def per_hook_id(service_id: str, hook: str) -> str:
    """The id a (service, hook) pair is advertised under in `per-hook` discovery."""
    return f"{service_id}-{hook}"


def shared_id(endpoint_id: str, hook: str) -> str:
    """The service's own id from a discovery entry's id, per-hook or shared."""
    return endpoint_id.removesuffix(f"-{hook}")


class ServiceRegistry:
    """An immutable, validated set of services, keyed by id."""

    def __init__(self, services: Iterable[ServiceDefinition]) -> None:
        self._services: dict[str, ServiceDefinition] = {}
        errors: list[str] = []
        for service in services:
            errors.extend(_check(service))
            if service.id in self._services:
                errors.append(f"service {service.id!r}: id is defined twice")
            self._services[service.id] = service
        self._endpoints = {sid: Endpoint(svc) for sid, svc in self._services.items()}
        for service in self._services.values():
            for hook in service.hooks:
                alias = per_hook_id(service.id, hook)
                if alias in self._endpoints:
                    errors.append(f"service {service.id!r}: per-hook id {alias!r} is taken")
                self._endpoints[alias] = Endpoint(service, hook)
        if errors:
            raise ConfigurationError("invalid service definitions:\n" + "\n".join(errors))

    def get(self, service_id: str) -> ServiceDefinition | None:
        """The service with this id (not a per-hook id), or None."""
        return self._services.get(service_id)

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        """The service a URL id reaches, by its own id or a per-hook id."""
        return self._endpoints.get(endpoint_id)

    def __iter__(self) -> Iterator[ServiceDefinition]:
        return iter(self._services.values())

    def __len__(self) -> int:
        return len(self._services)

    def descriptors(self, *, per_hook_ids: bool = False) -> list[ServiceDescriptor]:
        """Discovery entries: one per (service, hook), under the shared or per-hook id."""
        out = []
        for service in self._services.values():
            for hook in service.hooks:
                prefetch = {k: spec.template for k, spec in service.prefetch_for(hook).items()}
                out.append(
                    ServiceDescriptor(
                        hook=hook,
                        id=per_hook_id(service.id, hook) if per_hook_ids else service.id,
                        title=service.title,
                        description=service.description,
                        prefetch=prefetch or None,
                        usage_requirements=service.usage_requirements,
                    )
                )
        return out


def _check(service: ServiceDefinition) -> list[str]:
    where = f"service {service.id!r}"
    errors = []
    if not _SERVICE_ID.match(service.id):
        errors.append(f"{where}: id must be 1-128 letters, digits, '.', '_' or '-'")
    if not service.description.strip():
        errors.append(f"{where}: description is required")
    if not service.hooks:
        errors.append(f"{where}: serves no hook")
    if len(set(service.hooks)) != len(service.hooks):
        errors.append(f"{where}: a hook is listed twice")
    for hook in service.hooks:
        if hook_spec(hook) is None:
            errors.append(f"{where}: {hook!r} is neither a library hook nor a reverse-domain hook")
    for key, spec in service.prefetch.items():
        if not _PREFETCH_KEY.match(key):
            errors.append(f"{where}: prefetch key {key!r} must be letters, digits, '_' or '-'")
        try:
            check_template(spec.template)
        except ConfigurationError as exc:
            errors.append(f"{where}: {exc.message}")
    for hook, keys in (service.prefetch_by_hook or {}).items():
        if hook not in service.hooks:
            errors.append(f"{where}: prefetch_by_hook names {hook!r}, which it does not serve")
        errors.extend(
            f"{where}: prefetch_by_hook[{hook!r}] names unknown key {k!r}"
            for k in keys
            if k not in service.prefetch
        )
    return errors
