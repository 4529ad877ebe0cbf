"""The one FHIR server double: canned answers and in-memory search, for every kind of test.

Unit tests, rule tests (`cds-service rules test`: a test file's `fhir_server.responses`),
benchmarks and the soak test stand it in for the EHR's FHIR server, as an
`httpx.MockTransport` handler (`handle`, `transport`) or as a plain function (`answer`).

    double = FhirDouble.from_bundle(synthea_bundle)          # in-memory search
    double = FhirDouble(responses={"Patient/p1": patient})   # canned answers only
    async with httpx.AsyncClient(transport=double.transport) as client: ...

What it answers, in this order:

1. A **canned answer** for the URL (`responses`, `add`): its body with 200 (or the status /
   `httpx.Response` / handler given). URLs are relative to `base_url`, compared after
   percent-decoding and without a leading ``/``; the query must match as written.
2. **In-memory mode** (the double was given `resources`, even none): a read ``Type/id`` answers
   the resource, or 404 OperationOutcome ``not-found`` when it holds no such resource; a search
   answers a ``searchset`` Bundle of the matches (empty when none match) when it understands
   every parameter: ``_id``, ``patient``, ``subject``, ``encounter``, ``context`` (references),
   ``status``, ``clinical-status``, ``verification-status``, ``code``, ``category``, ``type``,
   ``vaccine-code``, ``class`` (Encounter.class) (tokens, comma = or); ``_count`` and ``_sort``
   are accepted and not applied (every match, one page, in the resources' order).
3. **Anything else** — a search with another parameter or a modifier, any URL without a canned
   answer in canned-only mode — answers **400 OperationOutcome** ``not-supported`` naming the
   URL. Never an empty Bundle: an empty Bundle says "the patient has none", so a double that
   invented one for a search it never evaluated let a rule test of an absence (no
   anticoagulant, no HbA1c) pass for the wrong reason.

4. **``metadata``** (in-memory mode) answers a CapabilityStatement; with ``batch=True`` it lists
   the system interaction ``batch`` and a ``POST`` of a ``batch`` Bundle to the base answers a
   ``batch-response`` whose entries are the answers above to each entry's ``GET`` (``batches``
   records each batch's URLs). Without it, a POST answers 400 ``not-supported``.

Every request is recorded (`requests`, and `requested`: the relative URLs) unless
``record=False`` (long runs: benchmarks, the soak test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import orjson

__all__ = ["Answer", "FhirDouble"]

# A canned answer: a body (200), a response, or a handler making one.
Answer = Mapping[str, Any] | httpx.Response | Callable[[httpx.Request], httpx.Response]

_REFERENCES = frozenset({"patient", "subject", "encounter", "context"})
_TOKENS = {
    "status": None,  # a plain code element
    "clinical-status": "clinicalStatus",
    "verification-status": "verificationStatus",
    "code": "code",
    "category": "category",
    "type": "type",
    "vaccine-code": "vaccineCode",
    "class": "class",  # Encounter.class, a Coding (inpatient, emergency, ...)
}
_NOT_APPLIED = frozenset({"_count", "_sort"})


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
    out = set()
    for ref in value if isinstance(value, list) else [value]:
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            target = ref["reference"]
            out.add(target)
            out.add(target.rsplit("/", 1)[-1].removeprefix("urn:uuid:"))
    return out


def _outcome(code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 410: "Gone"}


def _normal(url: str) -> str:
    return unquote(url).lstrip("/")


class FhirDouble:
    """A FHIR server double (see the module docstring for what it answers)."""

    def __init__(
        self,
        resources: Iterable[dict[str, Any]] | None = None,
        *,
        responses: Mapping[str, Answer] | None = None,
        base_url: str | None = "https://fhir.test.invalid/r4",
        record: bool = True,
        batch: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.batch = batch
        self.batches: list[list[str]] = []
        self.responses = {_normal(url): answer for url, answer in (responses or {}).items()}
        self.record = record
        self.requests: list[httpx.Request] = []
        self.requested: list[str] = []
        self._by_type: dict[str, list[dict[str, Any]]] | None = None
        if resources is not None:
            self._by_type = {}
            for resource in resources:
                if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                    self._by_type.setdefault(resource["resourceType"], []).append(resource)

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any], **options: Any) -> FhirDouble:
        """In-memory mode over a Bundle's resources (a Synthea patient)."""
        return cls(
            (
                entry["resource"]
                for entry in bundle.get("entry") or []
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
            ),
            **options,
        )

    def add(self, url: str, answer: Answer, status: int = 200) -> None:
        """A canned answer for `url`: a body (answered with `status`), response or handler."""
        if isinstance(answer, Mapping):
            answer = httpx.Response(status, json=dict(answer))
        self.responses[_normal(url)] = answer

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        """The held resources of one type (in-memory mode)."""
        return list((self._by_type or {}).get(resource_type, []))

    @property
    def transport(self) -> httpx.MockTransport:
        """For `httpx.AsyncClient(transport=...)` or `create_app(fhir_transport=...)`."""
        return httpx.MockTransport(self.handle)

    # --- answering ---------------------------------------------------------------------------

    def relative(self, url: httpx.URL) -> str:
        """`url` relative to `base_url`'s path, as sent (still percent-encoded)."""
        text = url.raw_path.decode("ascii")
        if self.base_url is not None:
            base_path = httpx.URL(self.base_url).raw_path.decode("ascii").rstrip("/")
            if text.startswith(base_path + "/"):
                text = text[len(base_path) :]
            elif text == base_path:
                text = ""  # the base itself (a batch is POSTed there)
        return text.lstrip("/")

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The `httpx.MockTransport` handler."""
        relative = self.relative(request.url)
        if self.record:
            self.requests.append(request)
            self.requested.append(_normal(relative))
        canned = self.responses.get(_normal(relative))
        if isinstance(canned, httpx.Response):
            return canned
        if callable(canned):
            return canned(request)
        if request.method == "POST":
            status, body = self._post(request, relative)
        else:
            status, body = self.answer(relative)
        return httpx.Response(
            status, content=orjson.dumps(body), headers={"Content-Type": "application/fhir+json"}
        )

    def answer(self, relative_url: str) -> tuple[int, dict[str, Any]]:
        """The status and body for a relative URL (canned bodies and in-memory mode)."""
        url = _normal(relative_url)
        canned = self.responses.get(url)
        if isinstance(canned, Mapping):
            return 200, dict(canned)
        if isinstance(canned, httpx.Response):
            return canned.status_code, canned.json()
        parts = urlsplit(relative_url.lstrip("/"))  # parameters split before decoding
        segments = [s for s in parts.path.split("/") if s]
        if self._by_type is not None and segments == ["metadata"] and not parts.query:
            return 200, self._capabilities()
        if self._by_type is None or not segments:
            return 400, _outcome("not-supported", f"the FHIR double has no answer for {url!r}")
        if not parts.query and len(segments) >= 2 and segments[-2][:1].isupper():
            return self._read(unquote(segments[-2]), unquote(segments[-1]))
        params = parse_qsl(parts.query, keep_blank_values=True)
        return self._search(unquote(segments[-1]), params, url)

    def _post(self, request: httpx.Request, relative: str) -> tuple[int, dict[str, Any]]:
        """A batch to the base (when `batch`); anything else is not supported."""
        try:
            bundle = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            bundle = None
        if (
            not self.batch
            or relative.strip("/")
            or not isinstance(bundle, dict)
            or bundle.get("type") != "batch"
        ):
            return 400, _outcome("not-supported", "the FHIR double takes no such POST")
        entries, urls = [], []
        for entry in bundle.get("entry") or []:
            call = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(call, dict) or call.get("method") != "GET":
                outcome = _outcome("not-supported", "only GET entries")
                entries.append(
                    {"response": {"status": "405 Method Not Allowed", "outcome": outcome}}
                )
                continue
            url = str(call.get("url", ""))
            urls.append(url)
            status, body = self.answer(url)
            answer: dict[str, Any] = {
                "response": {"status": f"{status} {_REASONS.get(status, '')}".strip()}
            }
            if status == 200:
                answer["resource"] = body
            else:
                answer["response"]["outcome"] = body
            entries.append(answer)
        if self.record:
            self.batches.append(urls)
        return 200, {"resourceType": "Bundle", "type": "batch-response", "entry": entries}

    def _capabilities(self) -> dict[str, Any]:
        interactions = [{"code": "search-system"}] + ([{"code": "batch"}] if self.batch else [])
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{"mode": "server", "interaction": interactions}],
        }

    def get(self, relative_url: str) -> dict[str, Any] | None:
        """The body of a 200 answer (a resource or a searchset Bundle), else None."""
        status, body = self.answer(relative_url)
        return body if status == 200 else None

    def _read(self, resource_type: str, ident: str) -> tuple[int, dict[str, Any]]:
        for resource in self.resources(resource_type):
            if resource.get("id") == ident:
                return 200, resource
        return 404, _outcome("not-found", f"{resource_type}/{ident} is not held")

    def _search(
        self, resource_type: str, params: list[tuple[str, str]], url: str
    ) -> tuple[int, dict[str, Any]]:
        unknown = sorted(
            {
                name
                for name, _ in params
                if name not in _REFERENCES
                and name not in _TOKENS
                and name not in _NOT_APPLIED
                and name != "_id"
            }
        )
        if unknown:
            message = f"the FHIR double cannot evaluate {', '.join(unknown)} in {url!r}"
            return 400, _outcome("not-supported", message)
        wanted = [(name, frozenset(value.split(","))) for name, value in params]
        found = [r for r in self.resources(resource_type) if self._matches(r, wanted)]
        base = self.base_url or ""
        return 200, {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [
                {
                    "fullUrl": f"{base}/{resource_type}/{r.get('id')}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in found
            ],
        }

    @staticmethod
    def _matches(resource: dict[str, Any], params: list[tuple[str, frozenset[str]]]) -> bool:
        for name, wanted in params:
            if name in _NOT_APPLIED:
                continue
            if name == "_id":
                if resource.get("id") not in wanted:
                    return False
            elif name in _REFERENCES:
                if name == "patient" and resource.get("resourceType") == "Patient":
                    continue
                element = "subject" if name == "patient" and "subject" in resource else name
                if not (_reference_ids(resource.get(element)) & wanted):
                    return False
            elif name == "status":
                if resource.get("status") not in wanted:
                    return False
            else:
                element = _TOKENS[name] or name
                if resource.get("resourceType") == "MedicationRequest" and name == "code":
                    element = "medicationCodeableConcept"
                if not (_codes(resource.get(element)) & wanted):
                    return False
        return True
