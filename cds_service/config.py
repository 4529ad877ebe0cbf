"""Settings, read from `CDS_*` environment variables and validated at start-up.

No module-level instance exists: the CLI builds one with `load_settings()` (which turns a
validation failure into a message naming the bad variable) and passes it to `create_app()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cds_service.exceptions import ConfigurationError
from cds_service.validation import field_errors

__all__ = ["PrefetchErrorPolicy", "Settings", "default_rules_dir", "load_settings"]

PrefetchErrorPolicy = Literal["fail", "omit", "pass"]


def default_rules_dir() -> Path:
    """The bundled `rules/` directory next to the package (source checkout or image)."""
    return Path(__file__).resolve().parent.parent / "rules"


class Settings(BaseSettings):
    """Every setting, with its environment variable `CDS_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "production"
    auth: Literal["required", "disabled"] = "required"
    tenants_file: Path | None = None
    jwt_clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    jwt_max_lifetime_seconds: int = Field(default=3600, ge=60, le=86_400)
    smart_session_idle_seconds: int = Field(default=900, ge=60, le=86_400)
    smart_cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    rules_dir: Path = Field(default_factory=default_rules_dir)
    database_url: str = "sqlite:///./var/cds-service.db"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_seconds: int = Field(default=10, ge=0, le=300)
    # Freeze the start-up heap and collect cycles less often (cds_service/heap.py); 0 = leave
    # the garbage collector as Python sets it.
    gc_threshold: int = Field(default=50_000, ge=0, le=10_000_000)
    tracing: Literal["off", "otlp"] = "off"
    discovery_ids: Literal["shared", "per-hook"] = "per-hook"
    public_base_url: str | None = None
    builtin_services: bool = True
    rules_reload_seconds: float = Field(default=2.0, ge=0, le=3600)
    rule_budget_seconds: float = Field(default=1.0, gt=0, le=30)
    redis_url: str | None = None
    score_cache_ttl_seconds: int = Field(default=86_400, ge=1)
    score_cache_enabled: bool = True  # off: every score is computed (benchmarks, debugging)
    # How long a worker reuses a patient's overrides read from the feedback table (snoozes):
    # feedback received by another worker or replica is seen at most this late; 0 reads each time.
    suppression_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # The Dask scheduler `rules simulate` and `precompute` use when given no --workers or
    # --scheduler (compose's population profile sets it); unset: a local cluster.
    population_scheduler: str | None = Field(
        default=None, pattern=r"^(tcp|tls|inproc|ucx)://[^\s]+$"
    )
    # The workbench's sample population (an NDJSON export or Bundles directory) for trying and
    # simulating rules, and where it is partitioned (and simulations run).
    workbench_population: Path | None = None
    workbench_workdir: Path = Path("./var/workbench")

    # Sign-in to the workbench (docs/workbench-auth.md): OpenID Connect against the
    # organisation's identity provider; `disabled` (everyone is an author) in development only.
    workbench_auth: Literal["oidc", "disabled"] = "oidc"
    workbench_oidc_issuer: str | None = None
    workbench_oidc_client_id: str | None = None
    # Set: a confidential client (client_secret_basic); unset: a public client (PKCE only).
    workbench_oidc_client_secret: SecretStr | None = None
    workbench_oidc_scopes: str = "openid profile email"
    workbench_groups_claim: str = Field(default="groups", min_length=1)
    # Who may sign in: emails and/or `group:NAME` entries, comma-separated.
    workbench_authors: Annotated[list[str], NoDecode] = Field(default_factory=list)
    workbench_readers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    workbench_session_idle_seconds: int = Field(default=1800, ge=60, le=86_400)

    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=64, ge=8, le=512)

    hook_budget_seconds: float = Field(default=2.0, gt=0, le=30)
    prefetch_deadline_seconds: float = Field(default=2.0, gt=0, le=30)
    prefetch_max_pages: int = Field(default=20, ge=1, le=1000)
    # FHIR requests in flight, and connections kept to EHR FHIR servers, per worker. 20 was
    # chosen when httpx's own pool scanned itself on every request; `http11.py` does not, and a
    # server without batches is served faster with more (README: 96 gave 74 calls/s where 20
    # gave 30). The default stays modest towards EHR servers; operators raise it.
    fhir_max_connections: int = Field(default=20, ge=1, le=1000)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_urls(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("https://", "http://")):
                raise ValueError(f"{origin!r} is not an origin such as https://ehr.example.org")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+asyncpg:", "postgres:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _absolute_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")) or "?" in value or "#" in value:
            raise ValueError("must be an absolute http(s) URL such as https://cds.example.org")
        return value.rstrip("/")

    @field_validator("tenants_file")
    @classmethod
    def _tenants_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    @field_validator("workbench_population")
    @classmethod
    def _population_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory (an NDJSON export or Bundles)")
        return value

    @field_validator(
        "workbench_oidc_issuer",
        "workbench_oidc_client_id",
        "workbench_oidc_client_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("workbench_oidc_issuer")
    @classmethod
    def _issuer_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        local = parts.hostname in ("127.0.0.1", "localhost")
        if not (parts.scheme == "https" or (parts.scheme == "http" and local)) or not (
            parts.hostname and not parts.query and not parts.fragment
        ):
            raise ValueError(
                "must be an https URL such as https://login.example.org/realms/staff "
                "(http only for 127.0.0.1 or localhost)"
            )
        return value  # kept as written: the provider's `issuer` must equal it exactly

    @field_validator("workbench_oidc_scopes")
    @classmethod
    def _openid_scope(cls, value: str) -> str:
        if "openid" not in value.split():
            raise ValueError("must include the scope openid")
        return value

    @field_validator("workbench_authors", "workbench_readers", mode="before")
    @classmethod
    def _split_members(cls, value: object) -> object:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @field_validator("workbench_authors", "workbench_readers")
    @classmethod
    def _members(cls, value: list[str]) -> list[str]:
        out = []
        for member in value:
            group = member.removeprefix("group:").strip() if member.startswith("group:") else None
            if group:
                out.append(f"group:{group}")
            elif group is None and "@" in member.strip("@"):
                out.append(member.lower())  # emails compare case-insensitively
            else:
                raise ValueError(f"{member!r} is neither an email nor group:NAME")
        return out

    @field_validator("rules_dir")
    @classmethod
    def _rules_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @model_validator(mode="after")
    def _wildcard_cors_only_in_development(self) -> Settings:
        if "*" in self.cors_origins and self.env != "development":
            raise ValueError(
                "CDS_CORS_ORIGINS='*' is only allowed with CDS_ENV=development; "
                "list the EHR origins instead"
            )
        return self

    @model_validator(mode="after")
    def _workbench_auth_only_off_in_development(self) -> Settings:
        if self.workbench_auth == "disabled" and self.env != "development":
            raise ValueError(
                "CDS_WORKBENCH_AUTH=disabled is only allowed with CDS_ENV=development; "
                "configure OpenID Connect sign-in (CDS_WORKBENCH_OIDC_ISSUER, "
                "CDS_WORKBENCH_OIDC_CLIENT_ID) instead"
            )
        return self


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and explicit overrides, e.g. CLI flags).

    Raises ConfigurationError with one line per bad setting, naming its variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in field_errors(exc):
            name = "_".join(p for p in error.loc if isinstance(p, str)).upper()
            variable = f"CDS_{name}" if name else "settings"
            lines.append(f"invalid setting {variable}: {error.message}")
        raise ConfigurationError("\n".join(lines)) from None
