"""Loading the client's private key from PEM and JWK files, and choosing RS384 / ES384."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds_service.bulk.errors import BulkError
from cds_service.bulk.keys import jwk_thumbprint, load_private_key, public_jwk
from tests.bulk.fakes import ec_key, pem, rsa_key

RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
    "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQ"
    "MicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2"
    "NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def test_rfc7638_thumbprint_example() -> None:
    public = RSAAlgorithm.from_jwk({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"})
    assert isinstance(public, rsa.RSAPublicKey)
    assert jwk_thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rsa_pem_signs_rs384_with_the_thumbprint_as_kid(tmp_path: Path) -> None:
    path = tmp_path / "client.pem"
    path.write_bytes(pem(rsa_key()))
    key, alg, kid = load_private_key(path)
    assert alg == "RS384"
    assert isinstance(key, rsa.RSAPrivateKey)
    assert kid == jwk_thumbprint(rsa_key()) and len(kid) == 43
    assert load_private_key(path, kid="my-kid").kid == "my-kid"


def test_ec_p384_pem_signs_es384(tmp_path: Path) -> None:
    path = tmp_path / "client.pem"
    path.write_bytes(pem(ec_key()))
    loaded = load_private_key(path)
    assert loaded.alg == "ES384" and isinstance(loaded.key, ec.EllipticCurvePrivateKey)


def test_encrypted_pem_needs_its_password(tmp_path: Path) -> None:
    path = tmp_path / "client.pem"
    path.write_bytes(pem(ec_key(), password=b"s3cret"))
    with pytest.raises(BulkError, match="password"):
        load_private_key(path)
    with pytest.raises(BulkError, match="password"):
        load_private_key(path, password=b"wrong")
    assert load_private_key(path, password=b"s3cret").alg == "ES384"


def test_unsuitable_keys_are_refused(tmp_path: Path) -> None:
    p256 = tmp_path / "p256.pem"
    p256.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(BulkError, match="P-384"):
        load_private_key(p256)
    small = tmp_path / "small.pem"
    small.write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    with pytest.raises(BulkError, match="2048"):
        load_private_key(small)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n")
    with pytest.raises(BulkError, match="no readable PEM"):
        load_private_key(garbage)
    with pytest.raises(BulkError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem")


def _private_jwk(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, **extra: str
) -> dict[str, str]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
    return {**jwk, **extra}


def test_a_private_jwk_file(tmp_path: Path) -> None:
    path = tmp_path / "client.jwk.json"
    path.write_text(json.dumps(_private_jwk(ec_key(), kid="ec-1", alg="ES384")))
    key, alg, kid = load_private_key(path)
    assert (alg, kid) == ("ES384", "ec-1")
    assert public_jwk(key)["x"] == public_jwk(ec_key())["x"]


def test_a_jwks_file_picks_the_private_key_with_the_wanted_kid(tmp_path: Path) -> None:
    path = tmp_path / "client.jwks.json"
    keys = [
        public_jwk(rsa_key()) | {"kid": "public-only"},
        _private_jwk(ec_key(), kid="ec-1"),
        _private_jwk(rsa_key(), kid="rsa-1", alg="RS384"),
    ]
    path.write_text(json.dumps({"keys": keys}))
    assert load_private_key(path).kid == "ec-1"
    assert load_private_key(path, kid="rsa-1")[1:] == ("RS384", "rsa-1")
    with pytest.raises(BulkError, match="no private key with kid 'public-only'"):
        load_private_key(path, kid="public-only")


def test_bad_jwk_files_are_refused_without_echoing_key_material(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    wrong_alg = _private_jwk(rsa_key(), alg="RS256")
    path.write_text(json.dumps(wrong_alg))
    with pytest.raises(BulkError, match="RS256") as caught:
        load_private_key(path)
    assert wrong_alg["d"] not in caught.value.message
    path.write_text(json.dumps(public_jwk(rsa_key())))
    with pytest.raises(BulkError, match="no private key"):
        load_private_key(path)
    broken = _private_jwk(rsa_key())
    broken["n"] = "!!!"
    path.write_text(json.dumps(broken))
    with pytest.raises(BulkError, match="malformed") as caught:
        load_private_key(path)
    assert broken["d"] not in str(caught.value)
    path.write_text(json.dumps({"kty": "oct", "k": "c2VjcmV0", "d": "x"}))
    with pytest.raises(BulkError, match="not supported"):
        load_private_key(path)
    path.write_text("{not json")
    with pytest.raises(BulkError, match="not valid JSON"):
        load_private_key(path)
