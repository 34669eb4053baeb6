"""Tests for :mod:`pulse_engine.passwords`: Argon2id hashing and strength rules."""

from __future__ import annotations

import statistics
import time

import pytest
from argon2 import PasswordHasher

from pulse_engine import passwords
from pulse_engine.passwords import (
    hash_password,
    needs_rehash,
    validate_password_strength,
    verify_dummy,
    verify_password,
)

GOOD = "correct horse battery staple"


@pytest.fixture(scope="module")
def good_hash() -> str:
    """One hash of :data:`GOOD`, shared because hashing is deliberately slow."""
    return hash_password(GOOD)


def test_hash_is_argon2id_with_pinned_parameters(good_hash: str) -> None:
    """Hashes use Argon2id and the RFC 9106 low-memory parameters, with a random salt."""
    assert good_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert hash_password(GOOD) != good_hash
    assert not needs_rehash(good_hash)


def test_verify(good_hash: str) -> None:
    """The right password verifies; a wrong one does not."""
    assert verify_password(good_hash, GOOD)
    assert not verify_password(good_hash, GOOD + " ")
    assert not verify_password(good_hash, "")


def test_unicode_is_normalised() -> None:
    """Composed and decomposed forms of the same password verify alike (NFKC)."""
    composed = "caf\u00e9 au lait, s'il vous pla\u00eet"
    decomposed = "cafe\u0301 au lait, s'il vous plai\u0302t"
    assert composed != decomposed
    assert verify_password(hash_password(composed), decomposed)


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=65536,t=3,p=4$AAAA$BBBB",
        "$argon2id$v=19$m=65536,t=3,p=4$!!!$???",
        "$2b$12$abcdefghijklmnopqrstuuFq7bYV5MzWGzXvFvZ6h3wTn5WqT3nq",
    ],
)
def test_verify_invalid_hash_returns_false(bad_hash: str) -> None:
    """Invalid or foreign hashes never raise, they just do not verify."""
    assert verify_password(bad_hash, GOOD) is False
    assert needs_rehash(bad_hash) is True


def test_verify_odd_inputs_return_false(good_hash: str) -> None:
    """Non-string arguments and NUL bytes do not raise."""
    assert verify_password(None, GOOD) is False  # type: ignore[arg-type]
    assert verify_password(good_hash, None) is False  # type: ignore[arg-type]
    assert verify_password(good_hash, "a\x00b") is False


def test_needs_rehash_for_weaker_parameters() -> None:
    """Hashes made with other parameters should be upgraded on next login."""
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(GOOD)
    assert verify_password(weak, GOOD)
    assert needs_rehash(weak)


@pytest.mark.parametrize(
    "password",
    [
        "correct horse",
        "ten chars!",
        "x" * 256,
        "пароль-достаточно-длинный",
        "          ",
    ],
)
def test_strength_accepts(password: str) -> None:
    """Any 10-256 character password that is not common is accepted; no composition rules."""
    validate_password_strength(password)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "at least 10"),
        ("short", "at least 10"),
        ("nine char", "at least 10"),
        ("x" * 257, "at most 256"),
        ("1234567890", "too common"),
        ("Password123", "too common"),
        ("QWERTYUIOP", "too common"),
        ("iloveyou123", "too common"),
    ],
)
def test_strength_rejects(password: str, message: str) -> None:
    """Too short, too long and common passwords are refused with a human message."""
    with pytest.raises(ValueError, match=message):
        validate_password_strength(password)


def test_dummy_hash_is_lazy_and_stable() -> None:
    """``DUMMY_HASH`` is computed once, with the same parameters as real hashes."""
    first = passwords.DUMMY_HASH
    assert first is passwords.DUMMY_HASH
    assert first.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert not needs_rehash(first)
    with pytest.raises(AttributeError):
        _ = passwords.NO_SUCH_NAME  # type: ignore[attr-defined]


def test_verify_dummy_costs_like_a_real_verify(good_hash: str) -> None:
    """Unknown-account logins take as long as wrong-password logins."""
    assert verify_dummy(GOOD) is False
    real: list[float] = []
    dummy: list[float] = []
    for _ in range(5):
        start = time.perf_counter()
        verify_password(good_hash, "wrong password!")
        real.append(time.perf_counter() - start)
        start = time.perf_counter()
        verify_dummy("wrong password!")
        dummy.append(time.perf_counter() - start)
    ratio = statistics.median(dummy) / statistics.median(real)
    assert 0.5 < ratio < 2.0
