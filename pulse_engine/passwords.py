"""Password hashing (Argon2id) and a NIST SP 800-63B style strength check.

Hashes use argon2-cffi's RFC 9106 *low-memory* profile, pinned explicitly so that a change
of library defaults shows up through :func:`needs_rehash` instead of silently:

* Argon2id, version 19 (0x13)
* memory cost 64 MiB (65536 KiB), time cost 3 iterations, parallelism 4
* 16-byte random salt, 32-byte tag

Roughly 30-80 ms and 64 MiB per hash on current server CPUs; call the functions through
``asyncio.to_thread`` from request handlers. Passwords are NFKC-normalised before hashing
(SP 800-63B section 5.1.1.2), so the same password typed with composed or decomposed
characters verifies.

:func:`verify_dummy` spends the same time as a real verification against
:data:`DUMMY_HASH`, so a login for an unknown account is indistinguishable by timing from a
login with a wrong password.
"""

from __future__ import annotations

import functools
import secrets
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

__all__ = [
    "COMMON_PASSWORDS",
    "DUMMY_HASH",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "hash_password",
    "needs_rehash",
    "validate_password_strength",
    "verify_dummy",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 10
"""Fewest characters (Unicode code points, after NFKC) a new password may have."""

MAX_PASSWORD_LENGTH = 256
"""Most characters a new password may have."""

# fmt: off
COMMON_PASSWORDS: frozenset[str] = frozenset({
    "123456", "password", "12345678", "qwerty", "123456789", "12345", "1234", "111111",
    "1234567", "dragon", "123123", "baseball", "abc123", "football", "monkey", "letmein",
    "shadow", "master", "666666", "qwertyuiop", "123321", "mustang", "1234567890", "michael",
    "654321", "superman", "1qaz2wsx", "7777777", "121212", "000000", "qazwsx", "123qwe",
    "trustno1", "iloveyou", "sunshine", "princess", "admin", "welcome", "password1",
    "password123", "qwerty123", "1q2w3e4r", "1q2w3e4r5t", "1q2w3e4r5t6y", "0987654321",
    "9876543210", "1111111111", "0000000000", "1234512345", "1234554321", "123456789a",
    "a123456789", "qwerty12345", "qwerty123456", "q1w2e3r4t5", "q1w2e3r4t5y6", "1qaz2wsx3edc",
    "zaq12wsx", "asdfghjkl", "asdfghjkl123", "zxcvbnm123", "iloveyou1", "iloveyou123",
    "password1234", "password12345", "password1!", "passw0rd", "p@ssw0rd", "p@ssw0rd123",
    "passw0rd123", "letmein123", "welcome123", "welcome1234", "admin12345", "administrator",
    "changeme", "changeme123", "sunshine123", "princess123", "football123", "baseball123",
    "superman123", "123123123", "123123123123", "abcdefghij", "abc1234567", "aaaaaaaaaa",
    "qwertyuiop123", "1234567890a",
})
# fmt: on
"""Most common leaked passwords (lower-case); a new password matching one is refused."""

_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)

DUMMY_HASH: str
"""A hash of a random secret, computed on first access; see :func:`verify_dummy`."""


def _normalise(password: str) -> str:
    """NFKC-normalise ``password`` as SP 800-63B recommends before hashing."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    """Return the Argon2id hash (PHC string) of ``password``."""
    return _HASHER.hash(_normalise(password))


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; ``False`` for any invalid input."""
    if not isinstance(password_hash, str) or not isinstance(password, str):
        return False
    try:
        return _HASHER.verify(password_hash, _normalise(password))
    except (VerificationError, InvalidHashError, ValueError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether ``password_hash`` was made with other parameters (or is not a valid hash).

    After a successful login, store :func:`hash_password` of the password when this is true.
    """
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError, TypeError):
        return True


def validate_password_strength(password: str) -> None:
    """Raise ``ValueError`` with a human message unless ``password`` is acceptable.

    Following NIST SP 800-63B there are no composition rules: a password needs 10 to 256
    characters and must not be one of the most common passwords (compared ignoring case).
    """
    normalised = _normalise(password)
    if len(normalised) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"Password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if len(normalised) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"Password must be at most {MAX_PASSWORD_LENGTH} characters long.")
    if normalised.casefold() in COMMON_PASSWORDS:
        raise ValueError("This password is too common; please choose another one.")


@functools.cache
def _dummy_hash() -> str:
    """Hash a random secret once, with the same parameters as real hashes."""
    return hash_password(secrets.token_urlsafe(32))


def __getattr__(name: str) -> str:
    """Compute :data:`DUMMY_HASH` lazily on first access (PEP 562)."""
    if name == "DUMMY_HASH":
        return _dummy_hash()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def verify_dummy(password: str) -> bool:
    """Verify ``password`` against :data:`DUMMY_HASH`, costing what a real check costs.

    Use it when the account does not exist; it always returns ``False``.
    """
    verify_password(_dummy_hash(), password)
    return False
