"""Tests for :mod:`pulse_engine.tokens`: issuing, verifying and rejecting hostile JWTs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pulse_engine import tokens
from pulse_engine.tokens import (
    MAX_TOKEN_BYTES,
    Principal,
    TokenConfig,
    TokenError,
    TokenService,
    generate_hs_secret,
    role_satisfies,
    token_config_from_settings,
)

SECRET = "s" * 48


def _pem_pair(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    """Return (private PEM, public PEM) for ``private_key``."""
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@pytest.fixture(scope="module")
def rsa_pems() -> tuple[str, str]:
    """A 2048-bit RSA key pair as PEM strings."""
    return _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def other_rsa_pems() -> tuple[str, str]:
    """A second, unrelated RSA key pair."""
    return _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_pems() -> tuple[str, str]:
    """A P-256 EC key pair as PEM strings."""
    return _pem_pair(ec.generate_private_key(ec.SECP256R1()))


def _hs_service(**overrides: Any) -> TokenService:
    """An HS256 service with test defaults, overridable per field."""
    fields: dict[str, Any] = {"algorithm": "HS256", "signing_key": SECRET, "verify_key": SECRET}
    fields.update(overrides)
    return TokenService(TokenConfig(**fields))


def _b64(data: dict[str, Any]) -> str:
    """Base64url-encode ``data`` as compact JSON, without padding."""
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    """A complete, currently valid set of access-token claims."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "u1",
        "tid": "t1",
        "role": "analyst",
        "typ": "access",
        "iss": "pulse",
        "aud": "pulse-api",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return claims


def _reason(service: TokenService, token: str) -> str:
    """The ``TokenError.reason`` raised when verifying ``token``; fails if it verifies."""
    with pytest.raises(TokenError) as info:
        service.verify_access(token)
    if token:
        assert token not in str(info.value)
    return info.value.reason


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256"])
def test_round_trip(algorithm: str, rsa_pems: tuple[str, str], ec_pems: tuple[str, str]) -> None:
    """A token issued by the service verifies back to the same principal."""
    if algorithm == "HS256":
        signing, verify = SECRET, SECRET
    else:
        signing, verify = rsa_pems if algorithm == "RS256" else ec_pems
    service = TokenService(TokenConfig(algorithm, signing, verify), verify_cache_size=0)
    token, issued = service.issue_access(
        user_id="u1", tenant_id="t1", role="service", scopes=["metrics:read", "ingest"]
    )
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    principal = service.verify_access(token)
    assert principal == issued
    assert principal.scopes == frozenset({"metrics:read", "ingest"})
    assert principal.kind == "user"
    assert len(principal.jti) == 32
    assert principal.expires_at == pytest.approx(time.time() + 1800, abs=5)


def test_access_claims_shape() -> None:
    """Access tokens carry exactly the documented claims."""
    service = _hs_service()
    token, principal = service.issue_access(user_id="root", tenant_id=None, role="superadmin")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="pulse-api")
    assert set(claims) == {"sub", "tid", "role", "typ", "iss", "aud", "exp", "iat", "nbf", "jti"}
    assert claims["tid"] is None and claims["typ"] == "access"
    assert claims["nbf"] == claims["iat"] and claims["exp"] == claims["iat"] + 1800
    assert service.verify_access(token).tenant_id is None
    assert principal.scopes == frozenset() and principal.family_id is None
    token, principal = service.issue_access(user_id="u1", tenant_id="t1", role="viewer",
                                            family_id="f1")
    assert jwt.decode(token, SECRET, algorithms=["HS256"], audience="pulse-api")["fam"] == "f1"
    assert service.verify_access(token).family_id == principal.family_id == "f1"


def test_refresh_round_trip() -> None:
    """Refresh tokens decode to their identifying claims and family."""
    service = _hs_service()
    token, jti = service.issue_refresh(user_id="u1", tenant_id=None, family_id="fam-1")
    claims = service.decode_refresh(token)
    assert claims["sub"] == "u1" and claims["tid"] is None
    assert claims["fam"] == "fam-1" and claims["jti"] == jti
    assert claims["exp"] == pytest.approx(time.time() + 14 * 86400, abs=5)


def test_alg_none_rejected() -> None:
    """An unsigned ``alg: none`` token is rejected."""
    token = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + "."
    assert _reason(_hs_service(), token) == "invalid_algorithm"


def test_other_secret_rejected() -> None:
    """A token signed with a different secret fails signature verification."""
    forged = jwt.encode(_claims(), "x" * 48, algorithm="HS256")
    assert _reason(_hs_service(), forged) == "invalid_signature"


def test_algorithm_confusion_rejected(rsa_pems: tuple[str, str]) -> None:
    """An HS256 token keyed with the RS256 public key PEM is rejected."""
    private_pem, public_pem = rsa_pems
    service = TokenService(TokenConfig("RS256", private_pem, public_pem))
    header = _b64({"alg": "HS256", "typ": "JWT"})
    payload = _b64(_claims())
    signature = hmac.new(public_pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    sig = base64.urlsafe_b64encode(signature.digest()).rstrip(b"=").decode()
    assert _reason(service, f"{header}.{payload}.{sig}") == "invalid_algorithm"


def test_rs256_token_rejected_by_other_key(
    rsa_pems: tuple[str, str], other_rsa_pems: tuple[str, str]
) -> None:
    """An RS256 token signed by another private key is rejected."""
    private_pem, public_pem = rsa_pems
    other_private = other_rsa_pems[0]
    forged = jwt.encode(_claims(), other_private, algorithm="RS256")
    service = TokenService(TokenConfig("RS256", private_pem, public_pem))
    assert _reason(service, forged) == "invalid_signature"


def test_expired_rejected() -> None:
    """Expired tokens are rejected, beyond and within the clock-skew leeway alike."""
    long_ago = _hs_service(access_ttl=-120)
    token, _ = long_ago.issue_access(user_id="u1", tenant_id="t1", role="viewer")
    assert _reason(long_ago, token) == "expired"
    just_now = _hs_service(access_ttl=-5)
    token, _ = just_now.issue_access(user_id="u1", tenant_id="t1", role="viewer")
    assert _reason(just_now, token) == "expired"


def test_not_yet_valid_rejected() -> None:
    """A token whose ``nbf`` is beyond the leeway in the future is rejected."""
    now = int(time.time())
    token = jwt.encode(_claims(nbf=now + 120, exp=now + 600), SECRET, algorithm="HS256")
    assert _reason(_hs_service(), token) == "not_yet_valid"


def test_small_clock_skew_tolerated() -> None:
    """``nbf``/``iat`` a few seconds ahead (issuer clock skew) are within the leeway."""
    now = int(time.time())
    token = jwt.encode(_claims(nbf=now + 10, iat=now + 10), SECRET, algorithm="HS256")
    assert _hs_service().verify_access(token).user_id == "u1"


def test_wrong_issuer_and_audience_rejected() -> None:
    """Tokens for another issuer or audience are rejected."""
    service = _hs_service()
    other_iss = jwt.encode(_claims(iss="evil"), SECRET, algorithm="HS256")
    assert _reason(service, other_iss) == "invalid_issuer"
    other_aud = jwt.encode(_claims(aud="other-api"), SECRET, algorithm="HS256")
    assert _reason(service, other_aud) == "invalid_audience"
    list_aud = jwt.encode(_claims(aud=["pulse-api", "other"]), SECRET, algorithm="HS256")
    assert _reason(service, list_aud) == "invalid_audience"


@pytest.mark.parametrize("claim", ["jti", "exp", "sub", "typ", "nbf", "iat"])
def test_missing_claim_rejected(claim: str) -> None:
    """Each required claim must be present."""
    claims = _claims()
    del claims[claim]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert _reason(_hs_service(), token) == "missing_claim"


def test_refresh_token_used_as_access_rejected() -> None:
    """A refresh token is not an access token, and vice versa."""
    service = _hs_service()
    refresh, _ = service.issue_refresh(user_id="u1", tenant_id="t1", family_id="f")
    assert _reason(service, refresh) == "wrong_type"
    access, _ = service.issue_access(user_id="u1", tenant_id="t1", role="admin")
    with pytest.raises(TokenError) as info:
        service.decode_refresh(access)
    assert info.value.reason == "wrong_type"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"role": "owner"}, "invalid_claim"),
        ({"role": 3}, "invalid_claim"),
        ({"role": None}, "invalid_claim"),
        ({"tid": None}, "invalid_claim"),
        ({"tid": 7}, "invalid_claim"),
        ({"scp": "admin"}, "invalid_claim"),
        ({"scp": [1]}, "invalid_claim"),
        ({"sub": ""}, "invalid_claim"),
        ({"fam": ["a"]}, "invalid_claim"),
        ({"fam": ""}, "invalid_claim"),
    ],
)
def test_invalid_claim_values_rejected(overrides: dict[str, Any], reason: str) -> None:
    """Correctly signed tokens with malformed role, tenant, scopes or subject are rejected."""
    token = jwt.encode(_claims(**overrides), SECRET, algorithm="HS256")
    assert _reason(_hs_service(), token) == reason


def test_tampered_payload_rejected() -> None:
    """Flipping one character of the payload breaks the signature."""
    service = _hs_service()
    token, _ = service.issue_access(user_id="u1", tenant_id="t1", role="viewer")
    header, payload, signature = token.split(".")
    flipped = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]
    assert _reason(service, f"{header}.{flipped}.{signature}") in {
        "invalid_signature",
        "malformed",
    }
    elevated = _b64(_claims(role="superadmin", tid=None))
    assert _reason(service, f"{header}.{elevated}.{signature}") == "invalid_signature"


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        ("", "malformed"),
        ("abc", "malformed"),
        ("a.b.c", "malformed"),
        ("....", "malformed"),
        ("é.é.é", "malformed"),
        ("\x00" * 10, "malformed"),
        (_b64({"alg": "HS256"}) + "..", "invalid_signature"),
        (_b64({"alg": "HS256"}) + "." + _b64({"a": 1}) + ".c2ln", "invalid_signature"),
        ("W10." + _b64({"a": 1}) + ".c2ln", "malformed"),
    ],
)
def test_garbage_rejected(garbage: str, reason: str) -> None:
    """Strings that are not JWTs are rejected with a reason, never crash."""
    assert _reason(_hs_service(), garbage) == reason


def test_fuzzed_tokens_never_crash() -> None:
    """Random mutations of a valid token raise ``TokenError`` or verify to the same principal."""
    service = TokenService(_hs_service().config, verify_cache_size=0)
    token, issued = service.issue_access(user_id="u1", tenant_id="t1", role="viewer")
    rng = random.Random(1234)
    alphabet = "ABCabc012-_.=+/ "
    for _ in range(2000):
        chars = list(token)
        for _ in range(rng.randint(1, 4)):
            action = rng.random()
            position = rng.randrange(len(chars))
            if action < 0.6:
                chars[position] = rng.choice(alphabet)
            elif action < 0.8:
                del chars[position]
            else:
                chars.insert(position, rng.choice(alphabet))
        try:
            principal = service.verify_access("".join(chars))
        except TokenError:
            continue
        assert principal == issued


def test_oversize_token_rejected() -> None:
    """Tokens above 8 KiB are refused before decoding, even if correctly signed."""
    service = _hs_service()
    big = jwt.encode(_claims(pad="x" * MAX_TOKEN_BYTES), SECRET, algorithm="HS256")
    assert _reason(service, big) == "too_large"


def test_verify_cache_serves_hits_and_rechecks_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-verified token comes from the cache, but never outlives its expiry."""
    service = _hs_service()
    token, _ = service.issue_access(user_id="u1", tenant_id="t1", role="viewer")
    first = service.verify_access(token)
    calls: list[str] = []
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        calls.append("decode")
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(tokens.jwt, "decode", counting_decode)
    assert service.verify_access(token) is first
    assert calls == []
    monkeypatch.setattr(tokens.time, "time", lambda: first.expires_at + 1)
    with pytest.raises(TokenError) as info:
        service.verify_access(token)
    assert info.value.reason == "expired"
    assert calls == []


def test_verify_cache_is_bounded() -> None:
    """The cache keeps at most ``verify_cache_size`` tokens, evicting the oldest."""
    service = _hs_service()
    small = TokenService(service.config, verify_cache_size=2)
    issued = [small.issue_access(user_id=f"u{i}", tenant_id="t", role="viewer") for i in range(3)]
    principals = [small.verify_access(token) for token, _ in issued]
    assert small.verify_access(issued[2][0]) is principals[2]
    assert small.verify_access(issued[0][0]) is not principals[0]


def test_role_satisfies() -> None:
    """Roles satisfy their rank and below; superadmin all; service none."""
    assert role_satisfies("admin", "analyst")
    assert role_satisfies("analyst", "analyst")
    assert not role_satisfies("viewer", "analyst")
    assert role_satisfies("superadmin", "admin")
    assert not role_satisfies("service", "viewer")
    assert not role_satisfies("nobody", "viewer")
    assert not role_satisfies("admin", "root")


def test_issue_rejects_bad_arguments() -> None:
    """Issuing refuses unknown roles and tenantless non-superadmins."""
    service = _hs_service()
    with pytest.raises(ValueError):
        service.issue_access(user_id="u1", tenant_id="t1", role="owner")
    with pytest.raises(ValueError):
        service.issue_access(user_id="u1", tenant_id=None, role="admin")
    with pytest.raises(ValueError):
        service.issue_access(user_id="", tenant_id="t1", role="admin")


def test_principal_is_frozen() -> None:
    """Principals cannot be mutated after verification."""
    principal = Principal("u", "t", "viewer", "j", 0.0)
    with pytest.raises(AttributeError):
        principal.role = "admin"  # type: ignore[misc]


def test_config_from_settings(rsa_pems: tuple[str, str], ec_pems: tuple[str, str]) -> None:
    """Valid settings build a config usable by the service."""
    secret = generate_hs_secret()
    assert len(secret) >= 64
    config = token_config_from_settings("hs256", secret, None, None, "pulse", "pulse-api", 15, 7)
    assert config.algorithm == "HS256" and config.verify_key == secret
    assert config.access_ttl == 900 and config.refresh_ttl == 7 * 86400
    rs = token_config_from_settings("RS256", None, *rsa_pems, "pulse", "pulse-api", 30, 14)
    es = token_config_from_settings("ES256", None, *ec_pems, "pulse", "pulse-api", 30, 14)
    for cfg in (config, rs, es):
        service = TokenService(cfg)
        token, _ = service.issue_access(user_id="u1", tenant_id="t1", role="viewer")
        assert service.verify_access(token).user_id == "u1"


@pytest.mark.parametrize(
    ("algorithm", "secret", "keys", "match"),
    [
        ("none", SECRET, "none", "not allowed"),
        ("NONE", SECRET, "none", "not allowed"),
        ("HS1024", SECRET, "none", "unsupported"),
        ("HS256", None, "none", "needs a JWT secret"),
        ("HS256", "short-secret", "none", "at least 32 bytes"),
        ("RS256", None, "none", "both a PEM"),
        ("RS256", None, "garbage", "PEM"),
        ("RS256", None, "ec", "RSA keys"),
        ("ES256", None, "rsa", "EC keys"),
        ("RS256", None, "mismatched", "does not match"),
    ],
)
def test_config_validation_errors(
    algorithm: str,
    secret: str | None,
    keys: str,
    match: str,
    rsa_pems: tuple[str, str],
    ec_pems: tuple[str, str],
    other_rsa_pems: tuple[str, str],
) -> None:
    """Invalid algorithm/key combinations raise ``ValueError`` with a clear message."""
    pems: dict[str, tuple[str | None, str | None]] = {
        "none": (None, None),
        "garbage": ("not a pem", "not a pem"),
        "ec": ec_pems,
        "rsa": rsa_pems,
        "mismatched": (rsa_pems[0], other_rsa_pems[1]),
    }
    private_pem, public_pem = pems[keys]
    with pytest.raises(ValueError, match=match):
        token_config_from_settings(
            algorithm, secret, private_pem, public_pem, "pulse", "pulse-api", 30, 14
        )


def test_config_rejects_bad_lifetimes() -> None:
    """Token lifetimes must be positive and issuer/audience non-empty."""
    with pytest.raises(ValueError, match="positive"):
        token_config_from_settings("HS256", SECRET, None, None, "pulse", "pulse-api", 0, 14)
    with pytest.raises(ValueError, match="empty"):
        token_config_from_settings("HS256", SECRET, None, None, "", "pulse-api", 30, 14)


def test_service_validates_config_directly() -> None:
    """A hand-built config with ``none`` or a weak secret is refused by the service too."""
    with pytest.raises(ValueError, match="not allowed"):
        TokenService(TokenConfig("none", SECRET, SECRET))
    with pytest.raises(ValueError, match="32 bytes"):
        TokenService(TokenConfig("HS256", "short", "short"))
    with pytest.raises(ValueError):
        TokenService(TokenConfig("HS256", SECRET, SECRET), verify_cache_size=-1)
