"""Encryption of integration secrets at rest (Fernet, key derived with HKDF).

The key comes from ``PULSE_ETL_SECRET_KEY`` when set, else from the engine's JWT secret,
else (embedded default) from a secret generated once in the data folder. Rotating the
source secret makes stored secrets unreadable: re-enter them after a rotation.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pulse_engine import Settings, load_or_create_secret
from pulse_etl.settings import EtlSettings


class SecretsUnreadable(Exception):
    """Stored secrets cannot be decrypted (the key changed since they were written)."""


class SecretBox:
    """Encrypts and decrypts JSON objects of secrets."""

    def __init__(self, key_material: str) -> None:
        """Derive the Fernet key from ``key_material``."""
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"pulse-etl", info=b"integration-secrets"
        ).derive(key_material.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    @classmethod
    def from_settings(cls, settings: Settings, etl_settings: EtlSettings) -> SecretBox:
        """The box for this deployment's key material (see the module docstring)."""
        material = etl_settings.secret_key or settings.jwt_secret_key
        if not material:
            if not settings.embedded:
                raise RuntimeError("Set PULSE_ETL_SECRET_KEY (or JWT_SECRET_KEY).")
            material = load_or_create_secret(settings.data_dir, "etl_secret_key")
        return cls(material)

    def encrypt(self, secrets: dict[str, Any]) -> str | None:
        """A token for ``secrets``, or None when there are none."""
        if not secrets:
            return None
        return self._fernet.encrypt(json.dumps(secrets).encode()).decode()

    def decrypt(self, token: str | None) -> dict[str, Any]:
        """The secrets inside ``token`` (``{}`` for None)."""
        if not token:
            return {}
        try:
            value: dict[str, Any] = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as error:
            raise SecretsUnreadable("stored secrets cannot be decrypted") from error
        return value
