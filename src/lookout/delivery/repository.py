"""SQL for the outbox, subscriptions, webhook messages and attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.alerts.models import OrgSequence
from lookout.delivery.models import (
    AlertEvent,
    MessageStatus,
    Subscription,
    WebhookAttempt,
    WebhookMessage,
)


async def events_after(
    session: AsyncSession, org_id: str, after: int, limit: int
) -> list[AlertEvent]:
    rows = await session.execute(
        select(AlertEvent)
        .where(AlertEvent.org_id == org_id, AlertEvent.sequence > after)
        .order_by(AlertEvent.sequence)
        .limit(limit)
    )
    return list(rows.scalars())


async def last_event_sequence(session: AsyncSession, org_id: str) -> int:
    value = await session.scalar(select(OrgSequence.event_last).where(OrgSequence.org_id == org_id))
    return int(value or 0)


async def add_subscription(session: AsyncSession, values: dict[str, Any]) -> Subscription:
    subscription = Subscription(**values)
    session.add(subscription)
    await session.flush()
    return subscription


def _live(org_id: str) -> Any:
    return select(Subscription).where(
        Subscription.org_id == org_id, Subscription.deleted_at.is_(None)
    )


async def subscriptions_of(session: AsyncSession, org_id: str) -> list[Subscription]:
    rows = await session.execute(_live(org_id).order_by(Subscription.created_at))
    return list(rows.scalars())


async def subscription_of(
    session: AsyncSession, org_id: str, subscription_id: uuid.UUID
) -> Subscription | None:
    rows = await session.execute(_live(org_id).where(Subscription.id == subscription_id))
    result: Subscription | None = rows.scalar_one_or_none()
    return result


async def attempts_of(
    session: AsyncSession, subscription_id: uuid.UUID, *, limit: int, before: int | None
) -> list[tuple[WebhookAttempt, WebhookMessage]]:
    query = (
        select(WebhookAttempt, WebhookMessage)
        .join(WebhookMessage, WebhookMessage.id == WebhookAttempt.message_id)
        .where(WebhookAttempt.subscription_id == subscription_id)
    )
    if before is not None:
        query = query.where(WebhookAttempt.id < before)
    rows = await session.execute(query.order_by(WebhookAttempt.id.desc()).limit(limit))
    return [(r[0], r[1]) for r in rows]


# Dispatcher ------------------------------------------------------------------------


async def active_subscriptions_locked(session: AsyncSession) -> list[Subscription]:
    rows = await session.execute(
        select(Subscription)
        .where(Subscription.disabled_at.is_(None), Subscription.deleted_at.is_(None))
        .order_by(Subscription.id)
        .with_for_update(skip_locked=True)
    )
    return list(rows.scalars())


async def insert_messages(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(pg_insert(WebhookMessage).on_conflict_do_nothing(), list(rows))


async def due_messages(
    session: AsyncSession, limit: int
) -> list[tuple[WebhookMessage, Subscription]]:
    """Pending messages whose time has come, of live subscriptions, row-locked (skip locked:
    several dispatchers share the work)."""
    rows = await session.execute(
        select(WebhookMessage, Subscription)
        .join(Subscription, Subscription.id == WebhookMessage.subscription_id)
        .where(
            WebhookMessage.status == MessageStatus.pending,
            WebhookMessage.next_attempt_at <= func.now(),
            Subscription.disabled_at.is_(None),
            Subscription.deleted_at.is_(None),
        )
        .order_by(WebhookMessage.next_attempt_at)
        .limit(limit)
        .with_for_update(of=WebhookMessage, skip_locked=True)
    )
    return [(r[0], r[1]) for r in rows]


async def add_attempt(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(WebhookAttempt).values(**values))


async def disable_subscription(
    session: AsyncSession, subscription_id: uuid.UUID, reason: str, at: datetime
) -> None:
    await session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id, Subscription.disabled_at.is_(None))
        .values(disabled_at=at, disabled_reason=reason)
    )


async def disabled_count(session: AsyncSession) -> int:
    """Subscriptions (not deleted) that delivery has given up on."""
    value = await session.scalar(
        select(func.count())
        .select_from(Subscription)
        .where(Subscription.disabled_at.is_not(None), Subscription.deleted_at.is_(None))
    )
    return int(value or 0)


async def pending_count(session: AsyncSession) -> int:
    value = await session.scalar(
        select(func.count())
        .select_from(WebhookMessage)
        .join(Subscription, Subscription.id == WebhookMessage.subscription_id)
        .where(
            WebhookMessage.status == MessageStatus.pending,
            Subscription.disabled_at.is_(None),
            Subscription.deleted_at.is_(None),
        )
    )
    return int(value or 0)
