"""SQL for the retention job: purge personal data in bounded batches, return what was purged."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.alerts.models import Alert, AlertEvidence, AlertStatus
from lookout.ingest.models import Event, Rejection


async def purge_event_data(session: AsyncSession, before: datetime, limit: int) -> list[int]:
    """Drop the payload and the publisher's record reference of events that happened
    before ``before``; (source, event_id, content_hash) and the internal-id ``facts``
    stay, so dedupe and the household graph survive."""
    due = (
        select(Event.id)
        .where(Event.event_time < before, Event.data.is_not(None))
        .order_by(Event.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = await session.execute(
        update(Event)
        .where(Event.id.in_(due))
        .values(data=null(), subject_ref="")  # SQL NULL, not JSON null
        .returning(Event.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(int(i) for i in rows.scalars())


async def purge_closed_alerts(
    session: AsyncSession, outcomes: tuple[str, ...], before: datetime, limit: int
) -> list[uuid.UUID]:
    """Redact closed alerts with these outcomes closed before ``before``: the row stays
    (its id is in the audit trail, and cool-down after closure still counts it)."""
    due = (
        select(Alert.id)
        .where(
            Alert.status == AlertStatus.closed,
            Alert.outcome.in_(outcomes),
            Alert.closed_at < before,
            Alert.purged_at.is_(None),
        )
        .order_by(Alert.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = await session.execute(
        update(Alert)
        .where(Alert.id.in_(due))
        .values(
            summary="",
            children=[],
            explanation={"purged": True},
            purged_at=func.now(),
        )
        .returning(Alert.id)
        .execution_options(synchronize_session=False)
    )
    purged = sorted(rows.scalars())
    if purged:  # the children each piece of evidence named go with the alert's
        await session.execute(
            update(AlertEvidence)
            .where(AlertEvidence.alert_id.in_(purged))
            .values(children=null())
            .execution_options(synchronize_session=False)
        )
    return purged


async def purge_rejections(session: AsyncSession, before: datetime, limit: int) -> list[uuid.UUID]:
    """Drop the original bytes, key and detail of rejections recorded before ``before``;
    the reason, source, event id and Kafka position stay for operators' statistics."""
    due = (
        select(Rejection.id)
        .where(Rejection.created_at < before, Rejection.purged_at.is_(None))
        .order_by(Rejection.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = await session.execute(
        update(Rejection)
        .where(Rejection.id.in_(due))
        .values(raw=None, kafka_key=None, detail="", purged_at=func.now())
        .returning(Rejection.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(rows.scalars())
