"""Writing audit records, always inside the caller's transaction (the edge commits)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lookout.audit.actions import Action
from lookout.db import fetch, json_dumps


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an organisation's client (API), the worker, or an operator at the CLI."""

    org_id: str | None = None
    client_id: str | None = None
    end_user: str | None = None
    purpose: str | None = None
    request_id: str | None = None


WORKER = Actor(client_id="lookout-worker", purpose="safeguarding_triggers")


@dataclass(frozen=True, slots=True)
class Entry:
    action: Action
    object_type: str | None
    object_id: str | None
    outcome: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)


_INSERT = """
    INSERT INTO audit_records (actor_org_id, actor_client_id, end_user, purpose, request_id,
        action, object_type, object_id, outcome, details)
    SELECT $1, $2, $3, $4, $5, action, object_type, object_id, outcome, details::jsonb
    FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
        AS r(action, object_type, object_id, outcome, details)
"""


async def record(session: AsyncSession, actor: Actor, entries: Sequence[Entry]) -> None:
    """Append ``entries`` for ``actor`` in one statement (the entries as arrays, in order;
    the trigger numbers the rows)."""
    if not entries:
        return
    await fetch(
        session,
        _INSERT,
        actor.org_id,
        actor.client_id,
        actor.end_user,
        actor.purpose,
        actor.request_id,
        [e.action.value for e in entries],
        [e.object_type for e in entries],
        [e.object_id for e in entries],
        [e.outcome for e in entries],
        [json_dumps(e.details) for e in entries],
    )
