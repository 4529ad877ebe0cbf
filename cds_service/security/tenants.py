"""Tenants: the EHRs allowed to call us (`CDS_TENANTS_FILE`).

```yaml
tenants:
  - id: hospital-a                      # matched against the JWT `tenant` claim when one is sent
    issuer: https://ehr.hospital-a.example.org
    jwks_url: https://ehr.hospital-a.example.org/.well-known/jwks.json   # the only jku accepted
    # or: jwks: {keys: [...]}           # a static key set
    algorithms: [ES384, RS384]
    fhir_servers: [https://fhir.hospital-a.example.org/r4]
    rate_limit_per_minute: 600          # optional; no limit when absent
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from cds_service.config import Settings
from cds_service.exceptions import ConfigurationError
from cds_service.validation import field_errors
from cds_service.yamlsource import read_yaml

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "SmartClient",
    "Tenant",
    "TenantRegistry",
    "load_tenants",
    "tenants_for",
]

# Signature algorithms we accept at all: asymmetric only (CDS Hooks forbids `none` and HMAC).
ASYMMETRIC_ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS384", "PS256")
Algorithm = Literal["ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS384", "PS256"]
Url = Annotated[StrictStr, Field(pattern=r"^https?://[^\s/?#]+[^\s?#]*$")]


class SmartClient(BaseModel):
    """How our SMART app is registered with this tenant's authorization server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: Annotated[StrictStr, Field(min_length=1)]
    scopes: Annotated[StrictStr, Field(min_length=1)] = (
        "launch openid fhirUser patient/Patient.rs patient/Observation.rs "
        "patient/Condition.rs patient/MedicationRequest.rs patient/Encounter.rs"
    )
    client_secret: StrictStr | None = None
    #: Ask for `patient/RiskAssessment.c` and offer "Save to chart" when the EHR grants it.
    write_back: StrictBool = False
    frame_ancestors: list[Annotated[StrictStr, Field(pattern=r"^https?://[^\s/]+$")]] = Field(
        default_factory=list
    )


def _default_algorithms() -> list[Algorithm]:
    return ["ES384", "RS384"]


class Tenant(BaseModel):
    """One EHR (organisation) allowed to call us."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    issuer: Annotated[StrictStr, Field(min_length=1)]
    jwks_url: Url | None = None
    jwks: dict[str, Any] | None = None
    #: Further `jku` header values accepted (the URL the EHR publishes its keys at, when the
    #: keys are configured statically in `jwks`); `jwks_url` is always accepted. Never fetched.
    jku_allowed: list[Url] = Field(default_factory=list)
    algorithms: list[Algorithm] = Field(default_factory=_default_algorithms, min_length=1)
    fhir_servers: list[Url] = Field(default_factory=list)
    rate_limit_per_minute: Annotated[int, Field(ge=1)] | None = None
    smart: SmartClient | None = None

    @field_validator("fhir_servers")
    @classmethod
    def _strip(cls, value: list[str]) -> list[str]:
        return [v.rstrip("/") for v in value]

    @field_validator("jwks")
    @classmethod
    def _key_set(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not (isinstance(value.get("keys"), list) and value["keys"]):
            raise ValueError("must be a JWK Set: {keys: [...]} with at least one key")
        return value

    def accepts_jku(self, jku: object) -> bool:
        """True when a JWT header's `jku` is the tenant's `jwks_url` or allow-listed."""
        return isinstance(jku, str) and (jku == self.jwks_url or jku in self.jku_allowed)

    @model_validator(mode="after")
    def _keys_from_somewhere(self) -> Tenant:
        if self.jwks is None and self.jwks_url is None:
            raise ValueError("give jwks_url or jwks (the keys its JWTs are signed with)")
        return self


class TenantsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenants: Annotated[list[Tenant], Field(min_length=1)]


class TenantRegistry:
    """Tenants by id and by issuer."""

    def __init__(self, tenants: list[Tenant]) -> None:
        self.tenants = {t.id: t for t in tenants}
        if len(self.tenants) != len(tenants):
            raise ConfigurationError("CDS_TENANTS_FILE: a tenant id is listed twice")
        self._by_issuer: dict[str, list[Tenant]] = {}
        for tenant in tenants:
            self._by_issuer.setdefault(tenant.issuer, []).append(tenant)

    def for_fhir_server(self, fhir_base: str) -> Tenant | None:
        """The tenant that lists this FHIR server (where a SMART `iss` must come from)."""
        base = fhir_base.rstrip("/")
        return next((t for t in self.tenants.values() if base in t.fhir_servers), None)

    def knows_issuer(self, issuer: str) -> bool:
        return issuer in self._by_issuer

    def resolve(self, issuer: str, tenant_claim: str | None) -> Tenant | None:
        """The tenant for a token: by `tenant` claim when sent, else the issuer's only tenant."""
        candidates = self._by_issuer.get(issuer, [])
        if tenant_claim is not None:
            return next((t for t in candidates if t.id == tenant_claim), None)
        return candidates[0] if len(candidates) == 1 else None


def load_tenants(path: Path) -> TenantRegistry:
    """Read and check the tenants file; ConfigurationError names the file, line and field."""
    located, errors = read_yaml(path)
    if located is None:
        first = errors[0]
        raise ConfigurationError(
            f"CDS_TENANTS_FILE {path}:{first.line}:{first.col}: {first.message}"
        )
    try:
        parsed = TenantsFile.model_validate(located.value)
    except ValidationError as exc:
        lines = []
        for error in field_errors(exc):
            line, col = located.position(error.loc)
            lines.append(f"CDS_TENANTS_FILE {path}:{line}:{col}: {error}")
        raise ConfigurationError("\n".join(lines)) from None
    return TenantRegistry(parsed.tenants)


def tenants_for(settings: Settings) -> TenantRegistry | None:
    """The tenants of CDS_TENANTS_FILE (None without one); a start-up error when CDS_AUTH=required
    has no file or the file is bad (naming its line and field)."""
    if settings.auth == "required" and settings.tenants_file is None:
        raise ConfigurationError(
            "invalid setting CDS_TENANTS_FILE: CDS_AUTH=required needs the file listing the "
            "EHRs allowed to call (set CDS_AUTH=disabled only for a local trial)"
        )
    return load_tenants(settings.tenants_file) if settings.tenants_file else None
