"""Ed25519 keys for audit checkpoints, and the signed checkpoint form.

The sealer signs; verifiers need only the public key (``LOOKOUT_AUDIT_VERIFY_KEY``), or
derive it from the private one. For the embedded stack the private key is generated on
first use into ``<state_dir>/audit_signing_key`` (PKCS#8 PEM, mode 0600); in production
set ``LOOKOUT_AUDIT_SIGNING_KEY`` (or the key file) from a secret store, and give
verifiers off the box the public key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lookout.settings import Settings


def key_file(settings: Settings) -> Path:
    return settings.audit_signing_key_file or Path(settings.state_dir) / "audit_signing_key"


def checkpoint_dir(settings: Settings) -> Path:
    return settings.audit_checkpoint_dir or Path(settings.state_dir) / "audit-checkpoints"


def _parse_private(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the audit signing key is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def signing_key(settings: Settings, *, create: bool) -> Ed25519PrivateKey | None:
    """The configured key, else the key file (made once, 0600, if ``create``)."""
    configured = settings.audit_signing_key.get_secret_value()
    if configured:
        return _parse_private(configured)
    path = key_file(settings)
    if path.exists():
        return _parse_private(path.read_text())
    if not create:
        return None
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    try:
        os.link(tmp, path)  # never replace a key another process just made
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _parse_private(path.read_text())


def verify_key(settings: Settings) -> Ed25519PublicKey | None:
    """The public key verifiers trust: configured, else derived from the private key."""
    if settings.audit_verify_key:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(settings.audit_verify_key))
    private = signing_key(settings, create=False)
    return private.public_key() if private is not None else None


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_bytes(key)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What is signed: the chain's head hash at ``seq``, when, and by which key."""

    seq: int
    head_hash: bytes
    created_at: datetime
    key_id: str

    def message(self) -> bytes:
        return orjson.dumps(
            {
                "seq": self.seq,
                "head": self.head_hash.hex(),
                "at": self.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
                "key_id": self.key_id,
            },
            option=orjson.OPT_SORT_KEYS,
        )


def sign(key: Ed25519PrivateKey, checkpoint: Checkpoint) -> bytes:
    return key.sign(checkpoint.message())


def signature_ok(key: Ed25519PublicKey, checkpoint: Checkpoint, signature: bytes) -> bool:
    try:
        key.verify(signature, checkpoint.message())
    except InvalidSignature:
        return False
    return True


def checkpoint_document(checkpoint: Checkpoint, signature: bytes, key: Ed25519PublicKey) -> bytes:
    """The file an operator ships off the box: enough to check the chain's head later."""
    return orjson.dumps(
        {
            "seq": checkpoint.seq,
            "head": checkpoint.head_hash.hex(),
            "at": checkpoint.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "key_id": checkpoint.key_id,
            "public_key": base64.b64encode(public_bytes(key)).decode(),
            "signature": base64.b64encode(signature).decode(),
        },
        option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2,
    )


def checkpoint_file_name(seq: int) -> str:
    return f"checkpoint-{seq:020d}.json"
