"""SQL for alerts and their evidence."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.alerts.models import Alert, AlertEvidence, AlertStatus
from lookout.ingest.models import Event
from lookout.orgs.models import Organisation, OrgKind


async def children_services_by_la(session: AsyncSession, la_codes: Iterable[str]) -> dict[str, str]:
    codes = list(set(la_codes))
    if not codes:
        return {}
    rows = await session.execute(
        select(Organisation.la_code, Organisation.id)
        .where(Organisation.kind == OrgKind.children_services, Organisation.la_code.in_(codes))
        .order_by(Organisation.id)
    )
    found: dict[str, str] = {}
    for la_code, org_id in rows:
        if la_code is not None:
            found.setdefault(la_code, org_id)
    return found


async def insert_open_alert(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert an alert unless one is already open for its (rule, household, recipient)."""
    result = await session.execute(
        pg_insert(Alert)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["rule_id", "household_id", "recipient_key"],
            index_where=text("status <> 'closed'"),
        )
        .returning(Alert.id)
    )
    return result.scalar_one_or_none()


async def open_alert_id(
    session: AsyncSession, rule_id: str, household_id: int, recipient_key: str
) -> uuid.UUID | None:
    result = await session.execute(
        select(Alert.id).where(
            Alert.rule_id == rule_id,
            Alert.household_id == household_id,
            Alert.recipient_key == recipient_key,
            Alert.status != AlertStatus.closed,
        )
    )
    return result.scalar_one_or_none()


async def suppressed_by_closed(
    session: AsyncSession,
    rule_id: str,
    household_id: int,
    recipient_key: str,
    event_pk: int,
    not_before: datetime,
) -> bool:
    """True if a closed alert already holds this event, or was closed too recently (cool-down)."""
    result = await session.execute(
        select(func.count())
        .select_from(Alert)
        .outerjoin(
            AlertEvidence,
            and_(AlertEvidence.alert_id == Alert.id, AlertEvidence.event_id == event_pk),
        )
        .where(
            Alert.rule_id == rule_id,
            Alert.household_id == household_id,
            Alert.recipient_key == recipient_key,
            Alert.status == AlertStatus.closed,
            or_(AlertEvidence.event_id.is_not(None), Alert.closed_at > not_before),
        )
    )
    return bool(result.scalar_one())


async def add_evidence(
    session: AsyncSession, alert_id: uuid.UUID, event_pk: int, role: str
) -> bool:
    result = await session.execute(
        pg_insert(AlertEvidence)
        .values(alert_id=alert_id, event_id=event_pk, role=role)
        .on_conflict_do_nothing()
        .returning(AlertEvidence.event_id)
    )
    return result.scalar_one_or_none() is not None


async def alerts_with_evidence(session: AsyncSession, event_pks: Sequence[int]) -> list[uuid.UUID]:
    if not event_pks:
        return []
    rows = await session.execute(
        select(AlertEvidence.alert_id).where(AlertEvidence.event_id.in_(event_pks)).distinct()
    )
    return list(rows.scalars())


async def alerts_involving(session: AsyncSession, person_ids: Sequence[int]) -> list[uuid.UUID]:
    """Alerts whose evidence events are about these persons or whose children include them."""
    if not person_ids:
        return []
    by_evidence = (
        select(AlertEvidence.alert_id)
        .join(Event, Event.id == AlertEvidence.event_id)
        .where(Event.subject_person_id.in_(list(person_ids)))
    )
    by_children = select(Alert.id).where(or_(*(Alert.children.contains([p]) for p in person_ids)))
    rows = await session.execute(
        select(Alert.id).where(Alert.id.in_(by_evidence.union(by_children)))
    )
    return sorted(set(rows.scalars()))


@dataclass(frozen=True, slots=True)
class HeldAlert:
    id: uuid.UUID
    household_id: int
    trigger_time: datetime
    closed_at: datetime | None


async def held_about(
    session: AsyncSession, org_id: str, household_ids: Iterable[int]
) -> list[HeldAlert]:
    """The alerts an organisation holds about these households (any status)."""
    ids = list(set(household_ids))
    if not ids:
        return []
    rows = await session.execute(
        select(Alert.id, Alert.household_id, Alert.trigger_time, Alert.closed_at).where(
            Alert.recipient_org_id == org_id, Alert.household_id.in_(ids)
        )
    )
    return [HeldAlert(*r) for r in rows]


async def mark_for_review(
    session: AsyncSession, alert_ids: Sequence[uuid.UUID], reason: str
) -> None:
    if alert_ids:
        await session.execute(
            update(Alert)
            .where(Alert.id.in_(alert_ids))
            .values(review_reason=reason, updated_at=func.now())
        )


def visible_to(org_id: str) -> Select[Alert]:
    """Every query of alerts on behalf of an organisation starts here."""
    return select(Alert).where(Alert.recipient_org_id == org_id)


async def page_for_org(
    session: AsyncSession, org_id: str, *, limit: int, before: tuple[datetime, uuid.UUID] | None
) -> list[Alert]:
    """Newest first; keyset pagination on (created_at, id) so new alerts never shift a page."""
    query = visible_to(org_id)
    if before is not None:
        query = query.where(
            or_(
                Alert.created_at < before[0],
                and_(Alert.created_at == before[0], Alert.id < before[1]),
            )
        )
    rows = await session.execute(
        query.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
    )
    return list(rows.scalars())


async def get_for_org(session: AsyncSession, org_id: str, alert_id: uuid.UUID) -> Alert | None:
    rows = await session.execute(visible_to(org_id).where(Alert.id == alert_id))
    return rows.scalar_one_or_none()


async def evidence_of(session: AsyncSession, alert_id: uuid.UUID) -> list[AlertEvidence]:
    rows = await session.execute(
        select(AlertEvidence)
        .where(AlertEvidence.alert_id == alert_id)
        .order_by(AlertEvidence.added_at)
    )
    return list(rows.scalars())
