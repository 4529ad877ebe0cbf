"""A read-only FHIR server over one in-memory set of resources, for prefetch without an EHR.

It answers the reads and simple searches that prefetch templates make (`Patient/123`,
`Observation?patient=123&code=4548-4&category=laboratory`, `MedicationRequest?...&status=active`),
as a plain function and as an `httpx.MockTransport` handler. Rule tests, benchmarks and the
precompute command use it with Synthea bundles and Bulk Data NDJSON; it is not a general FHIR
server: unknown search parameters are ignored (the answer is a superset), and `_count`/`_sort`
are not applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

__all__ = ["LocalFhirServer"]

_REFERENCE_PARAMS = {"patient", "subject", "encounter", "context"}


def _codes(value: Any) -> set[str]:
    """Every `code` and `system|code` inside a Coding / CodeableConcept (or list of them)."""
    out: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if isinstance(item.get("coding"), list):
                stack.extend(item["coding"])
            code = item.get("code")
            if isinstance(code, str):
                out.add(code)
                if isinstance(item.get("system"), str):
                    out.add(f"{item['system']}|{code}")
        elif isinstance(item, str):
            out.add(item)
    return out


def _reference_ids(value: Any) -> set[str]:
    refs = value if isinstance(value, list) else [value]
    out = set()
    for ref in refs:
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            target = ref["reference"]
            out.add(target)
            out.add(target.rsplit("/", 1)[-1].removeprefix("urn:uuid:"))
    return out


class LocalFhirServer:
    """Answers FHIR reads and searches from a fixed set of resources."""

    def __init__(
        self, resources: Iterable[dict[str, Any]], base_url: str = "https://local.invalid/fhir"
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._by_type: dict[str, list[dict[str, Any]]] = {}
        for resource in resources:
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                self._by_type.setdefault(resource["resourceType"], []).append(resource)

    @classmethod
    def from_bundle(cls, bundle: dict[str, Any]) -> LocalFhirServer:
        return cls(
            entry["resource"]
            for entry in bundle.get("entry") or []
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
        )

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        return list(self._by_type.get(resource_type, []))

    def get(self, relative_url: str) -> dict[str, Any] | None:
        """The resource (read) or searchset Bundle (search) for a relative URL; None = not found."""
        parts = urlsplit(relative_url)
        path = unquote(parts.path).strip("/")
        if "/" in path:
            resource_type, _, ident = path.partition("/")
            for resource in self._by_type.get(resource_type, []):
                if resource.get("id") == ident:
                    return resource
            return None
        params = parse_qsl(parts.query, keep_blank_values=True)
        found = [r for r in self._by_type.get(path, []) if self._matches(r, params)]
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [
                {
                    "fullUrl": f"{self.base_url}/{path}/{r.get('id')}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in found
            ],
        }

    def _matches(self, resource: dict[str, Any], params: list[tuple[str, str]]) -> bool:
        for name, value in params:
            name = name.split(":", 1)[0]
            wanted = set(value.split(","))
            if name in _REFERENCE_PARAMS:
                element = "subject" if name == "patient" and "subject" in resource else name
                if name == "patient" and resource.get("resourceType") == "Patient":
                    continue
                if not (_reference_ids(resource.get(element)) & wanted):
                    return False
            elif name == "status":
                if resource.get("status") not in wanted:
                    return False
            elif name in ("clinical-status", "verification-status"):
                element = "clinicalStatus" if name == "clinical-status" else "verificationStatus"
                if not (_codes(resource.get(element)) & wanted):
                    return False
            elif name in ("code", "category", "type", "vaccine-code"):
                element = {"vaccine-code": "vaccineCode"}.get(name, name)
                if resource.get("resourceType") == "MedicationRequest" and name == "code":
                    element = "medicationCodeableConcept"
                if not (_codes(resource.get(element)) & wanted):
                    return False
        return True

    def handle(self, request: httpx.Request) -> httpx.Response:
        """`httpx.MockTransport` handler: 200 with the answer, 404 for an unknown read."""
        url = str(request.url)
        relative = url[len(self.base_url) + 1 :] if url.startswith(self.base_url + "/") else url
        answer = self.get(relative)
        if answer is None:
            return httpx.Response(
                404,
                json={
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "not-found"}],
                },
            )
        return httpx.Response(200, json=answer)
