"""JWT access and refresh tokens: issuing and (hostile-input-safe) verification.

Every token handed to :meth:`TokenService.verify_access` or :meth:`TokenService.decode_refresh`
is treated as attacker-controlled:

* only the one configured algorithm is accepted, so ``alg: none`` and algorithm-confusion
  tokens (an HS256 token "signed" with an RS256 public key) are rejected;
* tokens longer than :data:`MAX_TOKEN_BYTES` are rejected before any decoding;
* ``exp``, ``iat``, ``nbf``, ``iss``, ``aud``, ``sub``, ``jti`` and ``typ`` are required,
  and the token type, role, tenant and scopes are checked for shape and value;
* a token is valid until its ``exp`` exactly: the configured leeway only absorbs clock skew
  on ``nbf`` and ``iat`` (tokens issued by a host whose clock runs slightly ahead).

Failures raise :class:`TokenError`, whose ``reason`` is a short machine string and whose
message never contains the token. Revocation (by ``jti``) is the caller's job.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "HS_ALGORITHMS",
    "MAX_TOKEN_BYTES",
    "ROLES",
    "ROLE_RANK",
    "SUPPORTED_ALGORITHMS",
    "Principal",
    "TokenConfig",
    "TokenError",
    "TokenService",
    "generate_hs_secret",
    "role_satisfies",
    "token_config_from_settings",
]

MAX_TOKEN_BYTES = 8 * 1024
"""Tokens longer than this are rejected before decoding."""

MIN_HS_SECRET_BYTES = 32
"""Minimum length of an HMAC secret, in UTF-8 bytes."""

MIN_RSA_KEY_BITS = 2048
"""Minimum RSA modulus size for RS* algorithms."""

HS_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
"""Symmetric algorithms: one shared secret signs and verifies."""

_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_RS_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})

SUPPORTED_ALGORITHMS = HS_ALGORITHMS | _RS_ALGORITHMS | frozenset(_EC_CURVES)
"""Every algorithm a :class:`TokenConfig` may name. ``none`` is deliberately absent."""

ROLE_RANK: dict[str, int] = {"viewer": 0, "analyst": 1, "admin": 2, "superadmin": 3}
"""Rank of each human role; a higher rank satisfies every lower requirement."""

ROLES = frozenset(ROLE_RANK) | {"service"}
"""Every role a token may carry. ``service`` principals are authorised by scopes only."""

_MAX_CLAIM_STRING = 256
_MAX_SCOPES = 64
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "typ"]


class TokenError(Exception):
    """A token was rejected.

    ``reason`` is a short machine string: ``expired``, ``not_yet_valid``,
    ``invalid_signature``, ``invalid_algorithm``, ``invalid_audience``, ``invalid_issuer``,
    ``malformed``, ``too_large``, ``missing_claim``, ``invalid_claim``, ``wrong_type``,
    ``revoked`` (raised by callers that track revoked ``jti`` values) or ``invalid_token``.
    The message never contains the token itself.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        """Create the error with a machine ``reason`` and an optional human message."""
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """The authenticated caller behind a verified access token (or API key)."""

    user_id: str
    tenant_id: str | None
    role: str
    jti: str
    expires_at: float
    scopes: frozenset[str] = frozenset()
    kind: str = "user"
    #: the login session (refresh-token family) the token was issued in, if any
    family_id: str | None = None


def role_satisfies(role: str, required: str) -> bool:
    """Whether a principal with ``role`` may act where ``required`` is needed.

    ``superadmin`` satisfies everything. ``service`` (and any unknown role) satisfies no
    rank requirement: service principals are authorised by their scopes instead.
    """
    if role == "superadmin":
        return True
    if role not in ROLE_RANK or required not in ROLE_RANK:
        return False
    return ROLE_RANK[role] >= ROLE_RANK[required]


@dataclass(frozen=True)
class TokenConfig:
    """How tokens are signed and which claims they carry.

    For HS* algorithms ``signing_key`` and ``verify_key`` are the same shared secret; for
    RS*/ES* they are the PEM private and public keys. Settings default to ``HS256`` (see
    :func:`token_config_from_settings`).
    """

    algorithm: str
    signing_key: str
    verify_key: str
    issuer: str = "pulse"
    audience: str = "pulse-api"
    access_ttl: int = 1800
    refresh_ttl: int = 14 * 86400
    leeway: int = 30


def generate_hs_secret() -> str:
    """Return a fresh random HMAC secret (64 random bytes, URL-safe base64)."""
    return secrets.token_urlsafe(64)


def _check_algorithm(algorithm: str) -> None:
    """Raise ``ValueError`` unless ``algorithm`` is one Pulse supports."""
    if algorithm.lower() == "none":
        raise ValueError("JWT algorithm 'none' is not allowed: tokens must be signed")
    if algorithm not in SUPPORTED_ALGORITHMS:
        supported = ", ".join(sorted(SUPPORTED_ALGORITHMS))
        raise ValueError(f"unsupported JWT algorithm {algorithm!r}; use one of {supported}")


def _load_keys(config: TokenConfig) -> tuple[Any, Any]:
    """Validate ``config`` and return the (signing, verification) keys PyJWT should use."""
    _check_algorithm(config.algorithm)
    if config.algorithm in HS_ALGORITHMS:
        if len(config.signing_key.encode()) < MIN_HS_SECRET_BYTES:
            raise ValueError(
                f"{config.algorithm} needs a secret of at least {MIN_HS_SECRET_BYTES} bytes"
            )
        if config.verify_key != config.signing_key:
            raise ValueError(f"{config.algorithm} signs and verifies with the same secret")
        return config.signing_key, config.verify_key
    try:
        private_key = serialization.load_pem_private_key(config.signing_key.encode(), None)
        public_key = serialization.load_pem_public_key(config.verify_key.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{config.algorithm} needs an unencrypted PEM private key and a PEM public key"
        ) from exc
    if config.algorithm in _RS_ALGORITHMS:
        if not isinstance(private_key, rsa.RSAPrivateKey) or not isinstance(
            public_key, rsa.RSAPublicKey
        ):
            raise ValueError(f"{config.algorithm} needs RSA keys")
        if private_key.key_size < MIN_RSA_KEY_BITS:
            raise ValueError(f"{config.algorithm} needs an RSA key of at least 2048 bits")
    else:
        curve = _EC_CURVES[config.algorithm]
        if (
            not isinstance(private_key, ec.EllipticCurvePrivateKey)
            or not isinstance(public_key, ec.EllipticCurvePublicKey)
            or not isinstance(private_key.curve, curve)
        ):
            raise ValueError(f"{config.algorithm} needs EC keys on curve {curve.name}")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private_key.public_key().public_bytes(*spki) != public_key.public_bytes(*spki):
        raise ValueError("the public key does not match the private key")
    return private_key, public_key


def token_config_from_settings(
    algorithm: str,
    secret: str | None,
    private_key_pem: str | None,
    public_key_pem: str | None,
    issuer: str,
    audience: str,
    access_minutes: int,
    refresh_days: int,
) -> TokenConfig:
    """Build and validate a :class:`TokenConfig` from application settings.

    HS* algorithms need ``secret`` (at least 32 bytes); RS*/ES* need both PEM keys, which
    must match each other. Unknown algorithms, including ``none``, raise ``ValueError``.
    """
    algorithm = algorithm.strip().upper()
    _check_algorithm(algorithm)
    if not issuer or not audience:
        raise ValueError("JWT issuer and audience must not be empty")
    if access_minutes <= 0 or refresh_days <= 0:
        raise ValueError("access token minutes and refresh token days must be positive")
    if algorithm in HS_ALGORITHMS:
        if not secret:
            raise ValueError(f"{algorithm} needs a JWT secret (see generate_hs_secret())")
        signing_key = verify_key = secret
    else:
        if not private_key_pem or not public_key_pem:
            raise ValueError(f"{algorithm} needs both a PEM private key and a PEM public key")
        signing_key, verify_key = private_key_pem, public_key_pem
    config = TokenConfig(
        algorithm=algorithm,
        signing_key=signing_key,
        verify_key=verify_key,
        issuer=issuer,
        audience=audience,
        access_ttl=access_minutes * 60,
        refresh_ttl=refresh_days * 86400,
    )
    _load_keys(config)
    return config


def _is_short_string(value: Any) -> bool:
    """Whether ``value`` is a non-empty string of reasonable length."""
    return isinstance(value, str) and 0 < len(value) <= _MAX_CLAIM_STRING


def _check_shape(token: Any) -> None:
    """Reject anything that is not a non-empty string of at most :data:`MAX_TOKEN_BYTES`."""
    if not isinstance(token, str) or not token:
        raise TokenError("malformed", "token must be a non-empty string")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError("too_large", f"token exceeds {MAX_TOKEN_BYTES} bytes")
    if not token.isascii():
        raise TokenError("malformed", "token contains non-ASCII characters")


def _check_tenant(tenant_id: Any, role: str) -> None:
    """Reject a tenant id that is malformed, or missing for anyone but a superadmin."""
    if tenant_id is None:
        if role != "superadmin":
            raise TokenError("invalid_claim", "tenant id is required for this role")
    elif not _is_short_string(tenant_id):
        raise TokenError("invalid_claim", "tenant id is malformed")


class TokenService:
    """Issues and verifies Pulse JWTs for one :class:`TokenConfig`.

    Verified access tokens are kept in a bounded LRU cache (token string to
    :class:`Principal`), so re-verifying a token is a dictionary lookup plus an expiry check.
    ``verify_cache_size=0`` disables the cache.
    """

    def __init__(self, config: TokenConfig, *, verify_cache_size: int = 4096) -> None:
        """Validate ``config`` (raising ``ValueError``) and load its keys."""
        if verify_cache_size < 0:
            raise ValueError("verify_cache_size must not be negative")
        self.config = config
        self._signing_key, self._verify_key = _load_keys(config)
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = verify_cache_size
        self._lock = threading.Lock()

    def _encode(self, claims: dict[str, Any]) -> str:
        """Sign ``claims`` with the configured algorithm and key."""
        return jwt.encode(claims, self._signing_key, algorithm=self.config.algorithm)

    def _base_claims(
        self, user_id: str, tenant_id: str | None, typ: str, ttl: int
    ) -> dict[str, Any]:
        """Claims every token carries; ``iat``/``nbf`` are now and ``exp`` is now + ``ttl``."""
        if not _is_short_string(user_id):
            raise ValueError("user_id must be a non-empty string of at most 256 characters")
        if tenant_id is not None and not _is_short_string(tenant_id):
            raise ValueError("tenant_id must be None or a non-empty string")
        now = int(time.time())
        return {
            "sub": user_id,
            "tid": tenant_id,
            "typ": typ,
            "iss": self.config.issuer,
            "aud": self.config.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }

    def issue_access(
        self,
        *,
        user_id: str,
        tenant_id: str | None,
        role: str,
        scopes: Iterable[str] = (),
        family_id: str | None = None,
    ) -> tuple[str, Principal]:
        """Issue an access token and return it with the :class:`Principal` it encodes.

        :param family_id: the refresh-token family (login session) it is issued with, so
            revoking the session revokes it too.
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if tenant_id is None and role != "superadmin":
            raise ValueError("only a superadmin token may have no tenant")
        scope_set = frozenset(scopes)
        if len(scope_set) > _MAX_SCOPES or not all(_is_short_string(s) for s in scope_set):
            raise ValueError(f"scopes must be at most {_MAX_SCOPES} non-empty strings")
        claims = self._base_claims(user_id, tenant_id, "access", self.config.access_ttl)
        claims["role"] = role
        if scope_set:
            claims["scp"] = sorted(scope_set)
        if family_id is not None:
            if not _is_short_string(family_id):
                raise ValueError("family_id must be a non-empty string of at most 256 characters")
            claims["fam"] = family_id
        principal = Principal(
            user_id=user_id,
            tenant_id=tenant_id,
            role=role,
            jti=claims["jti"],
            expires_at=float(claims["exp"]),
            scopes=scope_set,
            family_id=family_id,
        )
        return self._encode(claims), principal

    def issue_refresh(
        self, *, user_id: str, tenant_id: str | None, family_id: str
    ) -> tuple[str, str]:
        """Issue a refresh token in rotation family ``family_id``; return ``(token, jti)``."""
        if not _is_short_string(family_id):
            raise ValueError("family_id must be a non-empty string of at most 256 characters")
        claims = self._base_claims(user_id, tenant_id, "refresh", self.config.refresh_ttl)
        claims["fam"] = family_id
        return self._encode(claims), claims["jti"]

    def _decode(self, token: str, typ: str) -> dict[str, Any]:
        """Verify signature, registered claims and ``typ``; return the claims.

        The caller must have passed ``token`` through :func:`_check_shape`.
        """
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.config.algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options={"require": _REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("expired", "token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError("not_yet_valid", "token is not yet valid") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("invalid_audience", "token audience is not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("invalid_issuer", "token issuer is not accepted") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError("missing_claim", f"token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise TokenError("invalid_algorithm", "token algorithm is not accepted") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("invalid_signature", "token signature is invalid") from exc
        except jwt.DecodeError as exc:
            raise TokenError("malformed", "token cannot be decoded") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("invalid_token", "token is invalid") from exc
        except (ValueError, TypeError, OverflowError) as exc:
            raise TokenError("malformed", "token cannot be decoded") from exc
        if claims["typ"] != typ:
            raise TokenError("wrong_type", f"expected a {typ} token")
        if not _is_short_string(claims["sub"]) or not _is_short_string(claims["jti"]):
            raise TokenError("invalid_claim", "token subject or id is malformed")
        if not isinstance(claims["exp"], int) or isinstance(claims["exp"], bool):
            raise TokenError("invalid_claim", "token expiry is not an integer")
        if time.time() > claims["exp"]:
            raise TokenError("expired", "token has expired")
        return claims

    def verify_access(self, token: str) -> Principal:
        """Verify an access token and return its :class:`Principal`, or raise :class:`TokenError`.

        Revocation is not checked here: callers compare ``Principal.jti`` with their
        revocation list.
        """
        _check_shape(token)
        with self._lock:
            cached = self._cache.get(token)
            if cached is not None:
                if time.time() > cached.expires_at:
                    del self._cache[token]
                    raise TokenError("expired", "token has expired")
                self._cache.move_to_end(token)
                return cached
        claims = self._decode(token, "access")
        role = claims.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise TokenError("invalid_claim", "token role is missing or unknown")
        tenant_id = claims.get("tid")
        _check_tenant(tenant_id, role)
        scopes = claims.get("scp", [])
        if (
            not isinstance(scopes, list)
            or len(scopes) > _MAX_SCOPES
            or not all(_is_short_string(s) for s in scopes)
        ):
            raise TokenError("invalid_claim", "token scopes are malformed")
        family_id = claims.get("fam")
        if family_id is not None and not _is_short_string(family_id):
            raise TokenError("invalid_claim", "token session is malformed")
        principal = Principal(
            user_id=claims["sub"],
            tenant_id=tenant_id,
            role=role,
            jti=claims["jti"],
            expires_at=float(claims["exp"]),
            scopes=frozenset(scopes),
            family_id=family_id,
        )
        if self._cache_size:
            with self._lock:
                self._cache[token] = principal
                self._cache.move_to_end(token)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return principal

    def decode_refresh(self, token: str) -> dict[str, Any]:
        """Verify a refresh token and return its ``sub``, ``tid``, ``fam``, ``jti`` and ``exp``."""
        _check_shape(token)
        claims = self._decode(token, "refresh")
        family_id = claims.get("fam")
        if not _is_short_string(family_id):
            raise TokenError("missing_claim", "refresh token lacks a valid 'fam' claim")
        tenant_id = claims.get("tid")
        if tenant_id is not None and not _is_short_string(tenant_id):
            raise TokenError("invalid_claim", "tenant id is malformed")
        return {
            "sub": claims["sub"],
            "tid": claims.get("tid"),
            "fam": family_id,
            "jti": claims["jti"],
            "exp": claims["exp"],
        }
