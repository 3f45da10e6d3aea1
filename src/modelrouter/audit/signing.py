"""Ed25519 keys for signed audit checkpoints (through the ``cryptography`` package).

A private key is read from a PEM file (PKCS#8, as ``modelrouter audit keygen`` writes it) or
from an environment variable holding that PEM text or the 32 raw key bytes in base64. A public
key is read from a PEM file, or derived from a private key file. A key is named by its *key id*:
the first 16 hex digits of the SHA-256 of its 32 raw public bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelrouter.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )


def _crypto() -> Any:
    """The ed25519 module of ``cryptography``, or a ConfigError saying how to install it."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise ConfigError(
            f"signed audit checkpoints need cryptography ({exc}): "
            "pip install 'modelrouter[signing]'"
        ) from None
    return ed25519


def _raw_public(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A key that checks signatures."""

    key: Ed25519PublicKey

    @property
    def raw_hex(self) -> str:
        return _raw_public(self.key).hex()

    @property
    def key_id(self) -> str:
        return hashlib.sha256(_raw_public(self.key)).hexdigest()[:16]

    def verifies(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        """A public key from its 32 raw bytes in hex (as a checkpoint carries it)."""
        try:
            raw = bytes.fromhex(text)
            return cls(_crypto().Ed25519PublicKey.from_public_bytes(raw))
        except ValueError as exc:
            raise ConfigError(f"not an Ed25519 public key: {exc}") from None

    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key that signs checkpoints."""

    key: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(_crypto().Ed25519PrivateKey.generate())


def _private_from_bytes(data: bytes, where: str) -> SigningKey:
    ed25519 = _crypto()
    from cryptography.hazmat.primitives import serialization

    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(text, password=None)
        else:
            key = ed25519.Ed25519PrivateKey.from_private_bytes(
                base64.b64decode(text, validate=True)
            )
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError(
            f"{where}: not an Ed25519 private key (PEM, or 32 bytes in base64): {exc}"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{where}: the key is not an Ed25519 key")
    return SigningKey(key)


def load_signing_key(key_file: Path | None = None, key_env: str | None = None) -> SigningKey:
    """The private key from ``key_file`` or from the environment variable ``key_env``."""
    if (key_file is None) == (key_env is None):
        raise ConfigError("give the checkpoint key as keyFile or keyEnv (one of them)")
    if key_file is not None:
        try:
            data = key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"checkpoint key file {key_file}: {exc.strerror or exc}") from None
        return _private_from_bytes(data, str(key_file))
    assert key_env is not None
    value = os.environ.get(key_env)
    if not value:
        raise ConfigError(f"the environment variable {key_env} (checkpoint key) is not set")
    return _private_from_bytes(value.encode(), f"${key_env}")


def load_public_key(path: Path) -> PublicKey:
    """A public key from a PEM file; a private key file gives its public half."""
    _crypto()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"public key file {path}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY" in data:
        return _private_from_bytes(data, str(path)).public
    try:
        key = serialization.load_pem_public_key(data.strip())
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM public key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{path}: the key is not an Ed25519 key")
    return PublicKey(key)
