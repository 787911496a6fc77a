"""Writing audit records, always inside the caller's transaction (the edge commits)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.audit.actions import Action
from lookout.audit.models import AuditRecord


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an organisation's client (API), the worker, or an operator at the CLI."""

    org_id: str | None = None
    client_id: str | None = None
    end_user: str | None = None
    purpose: str | None = None
    request_id: str | None = None


_AUDIT_RECORDS = AuditRecord.metadata.tables["audit_records"]

WORKER = Actor(client_id="lookout-worker", purpose="safeguarding_triggers")


@dataclass(frozen=True, slots=True)
class Entry:
    action: Action
    object_type: str | None
    object_id: str | None
    outcome: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)


async def record(session: AsyncSession, actor: Actor, entries: Sequence[Entry]) -> None:
    """Append ``entries`` for ``actor`` in one multi-row statement (Core, on the table: no
    ORM bookkeeping per row; the trigger numbers the rows)."""
    if not entries:
        return
    await session.execute(
        insert(_AUDIT_RECORDS),
        [
            {
                "actor_org_id": actor.org_id,
                "actor_client_id": actor.client_id,
                "end_user": actor.end_user,
                "purpose": actor.purpose,
                "request_id": actor.request_id,
                "action": e.action.value,
                "object_type": e.object_type,
                "object_id": e.object_id,
                "outcome": e.outcome,
                "details": e.details,
            }
            for e in entries
        ],
    )
