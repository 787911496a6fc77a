"""Client secrets (Argon2id hashes) and short-lived signed access tokens (JWT, HS256)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_ISSUER = "lookout"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(secret_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


# Verifying against this when the client id is unknown keeps the timing the same.
DUMMY_HASH = hash_secret(new_secret())


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of an API request, as its token states."""

    client_id: str
    org_id: str
    org_kind: str


def issue_token(principal: Principal, key: str, ttl: timedelta) -> str:
    now = datetime.now(UTC)
    claims = {
        "iss": _ISSUER,
        "sub": principal.client_id,
        "org": principal.org_id,
        "kind": principal.org_kind,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, key, algorithm="HS256")


def read_token(token: str, key: str) -> Principal | None:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            issuer=_ISSUER,
            options={"require": ["exp", "sub", "org", "kind"]},
        )
    except jwt.PyJWTError:
        return None
    return Principal(
        client_id=str(claims["sub"]), org_id=str(claims["org"]), org_kind=str(claims["kind"])
    )
