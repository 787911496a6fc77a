"""The canonical form of an audit record and the hash chain over it (pure, no I/O).

Canonical form of record ``seq`` (what is hashed)::

    orjson.dumps({
        "seq": 17, "at": "2026-11-25T15:03:49.738932+00:00",   # UTC, microseconds
        "actor_org_id": ..., "actor_client_id": ..., "end_user": ...,
        "action": "api:alert:read", "object_type": "alert", "object_id": "…",
        "purpose": ..., "outcome": "ok", "request_id": ..., "details": {...},
        "prev": "<hex SHA-256 of the previous sealed record, 64 zeros for the first>",
    }, option=OPT_SORT_KEYS)           # keys sorted at every level, no whitespace

    hash(seq) = SHA-256(canonical form)

Every field of the row except ``xid`` (sealer bookkeeping) is covered, and so is ``seq``
itself: a record moved to another position no longer matches, and neither does any
record after a deleted or inserted one, because each hash covers the one before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = bytes(32)

FIELDS = (
    "seq",
    "at",
    "actor_org_id",
    "actor_client_id",
    "end_user",
    "action",
    "object_type",
    "object_id",
    "purpose",
    "outcome",
    "request_id",
    "details",
)


@dataclass(frozen=True, slots=True)
class Row:
    """The hashed fields of one audit record."""

    seq: int
    at: datetime
    actor_org_id: str | None
    actor_client_id: str | None
    end_user: str | None
    action: str
    object_type: str | None
    object_id: str | None
    purpose: str | None
    outcome: str
    request_id: str | None
    details: Mapping[str, Any]


def canonical(row: Row, prev: bytes) -> bytes:
    body: dict[str, Any] = {name: getattr(row, name) for name in FIELDS}
    body["at"] = row.at.astimezone(UTC).isoformat(timespec="microseconds")
    body["details"] = dict(row.details)
    body["prev"] = prev.hex()
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def link(row: Row, prev: bytes) -> bytes:
    """The hash of ``row`` chained onto ``prev``."""
    return hashlib.sha256(canonical(row, prev)).digest()
