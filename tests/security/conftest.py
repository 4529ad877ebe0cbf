"""Keys, tokens and an app with authentication on, for the security tests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.services.builtin import builtin_services

BASE = "https://cds.example.org"
ISSUER = "https://ehr.hospital-a.example.org"
JWKS_URL = f"{ISSUER}/.well-known/jwks.json"
FHIR = "https://fhir.hospital-a.example.org/r4"
NOW = 1_900_000_000.0


@dataclass
class Keys:
    ec_key: ec.EllipticCurvePrivateKey
    rsa_key: rsa.RSAPrivateKey
    other_ec: ec.EllipticCurvePrivateKey

    def jwks(self, *extra: tuple[Any, str, str]) -> dict[str, Any]:
        keys = []
        for private, kid, alg in (
            (self.ec_key, "ec-1", "ES384"),
            (self.rsa_key, "rsa-1", "RS384"),
            *extra,
        ):
            algorithm = ECAlgorithm if alg.startswith("ES") else RSAAlgorithm
            jwk = json.loads(algorithm.to_jwk(private.public_key()))
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        ec.generate_private_key(ec.SECP384R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP384R1()),
    )


def make_token(
    keys: Keys,
    path: str,
    *,
    alg: str = "ES384",
    kid: str | None = "ec-1",
    key: Any = None,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A CDS Hooks client JWT for `path` (aud = BASE + path) signed as the EHR would."""
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": BASE + path,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "jti": uuid.uuid4().hex,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    header = {"typ": "JWT", "jku": JWKS_URL, **(headers or {})}
    if kid is not None:
        header["kid"] = kid
    if key is None:
        key = keys.ec_key if alg.startswith("ES") else keys.rsa_key
    return jwt.encode(body, key, algorithm=alg, headers=header)


def write_tenants(path: Path, keys: Keys, **overrides: Any) -> Path:
    tenant: dict[str, Any] = {
        "id": "hospital-a",
        "issuer": ISSUER,
        "jwks_url": JWKS_URL,
        "jwks": keys.jwks(),
        "algorithms": ["ES384", "RS384"],
        "fhir_servers": [FHIR],
    }
    tenant.update(overrides)
    tenant = {k: v for k, v in tenant.items() if v is not None}
    path.write_text(yaml.safe_dump({"tenants": [tenant]}))
    return path


@pytest.fixture
def secure_app(tmp_path: Path, keys: Keys) -> Callable[..., TestClient]:
    """An app with CDS_AUTH=required; keyword arguments override settings or the tenant."""

    def build(
        *,
        tenant: dict[str, Any] | None = None,
        fhir: Callable[[httpx.Request], httpx.Response] | None = None,
        jwks: Callable[[httpx.Request], httpx.Response] | None = None,
        clock: Callable[[], float] = lambda: NOW,
        **settings: Any,
    ) -> TestClient:
        tenants = write_tenants(tmp_path / "tenants.yaml", keys, **(tenant or {}))
        settings.setdefault("database_url", f"sqlite:///{tmp_path}/cds.db")
        config = Settings(
            auth="required",
            env="production",
            tenants_file=tenants,
            public_base_url=BASE,
            **settings,
        )
        return TestClient(
            create_app(
                config,
                services=builtin_services(),
                fhir_transport=httpx.MockTransport(fhir) if fhir else None,
                jwks_transport=httpx.MockTransport(jwks) if jwks else None,
                auth_clock=clock,
            )
        )

    return build


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def encounter_start(**extra: Any) -> dict[str, Any]:
    """A valid call of the allergy-documentation built-in (it serves encounter-start)."""
    body: dict[str, Any] = {
        "hook": "encounter-start",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "p1", "encounterId": "e1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1"},
            "allergies": {"resourceType": "Bundle", "type": "searchset"},
        },
    }
    body.update(extra)
    return body


@pytest.fixture
def client(secure_app: Callable[..., TestClient]) -> Iterator[TestClient]:
    with secure_app() as test_client:
        yield test_client


__all__ = [
    "BASE",
    "FHIR",
    "ISSUER",
    "JWKS_URL",
    "NOW",
    "Keys",
    "bearer",
    "encounter_start",
    "make_token",
    "time",
    "write_tenants",
]
