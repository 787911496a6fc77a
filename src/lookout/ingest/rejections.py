"""Rejected events for operators and publishers: list them, and replay one (republish its
original bytes to the events topic, e.g. once its source is registered).

One service for both edges, ``/v1/rejections`` (HTTP) and ``lookout dlq`` (CLI); each
call writes its audit record in the caller's transaction, and nothing here commits.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.errors import NotFound
from lookout.ingest import repository
from lookout.ingest.models import Rejection


async def list_rejections(
    session: AsyncSession,
    actor: Actor,
    *,
    source: str | None,
    limit: int,
    before: uuid.UUID | None = None,
    reason: str | None = None,
) -> list[Rejection]:
    """Newest first; ``source`` None means every publisher's (operators only)."""
    rows = await repository.rejections_page(
        session, source=source, limit=limit, before=before, reason=reason
    )
    await record(
        session,
        actor,
        [Entry(Action.rejection_listed, "rejection", None, details={"count": len(rows)})],
    )
    return rows


async def replay(
    session: AsyncSession,
    actor: Actor,
    producer: AIOKafkaProducer,
    topic: str,
    rejection_id: uuid.UUID,
    *,
    why: str | None = None,
) -> Rejection:
    """Republish the rejected message's original bytes and key to ``topic`` (the worker
    then handles it like any other message: a still-invalid one is rejected again)."""
    rejection = await repository.rejection(session, rejection_id)
    if rejection is None or rejection.raw is None:
        raise NotFound("no such rejection (or its bytes were purged under retention)")
    await producer.send_and_wait(topic, value=rejection.raw, key=rejection.kafka_key)
    details: dict[str, Any] = {"reason_code": rejection.reason}
    if why:
        details["why"] = why[:500]
    await record(
        session,
        actor,
        [Entry(Action.rejection_replayed, "rejection", str(rejection_id), details=details)],
    )
    return rejection
