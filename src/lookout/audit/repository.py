"""SQL for the audit trail: the sealer's fence, seals, checkpoints, and auditors' reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, and_, cast, func, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from lookout.alerts.models import Alert
from lookout.audit.chain import Row
from lookout.audit.models import AuditCheckpoint, AuditRecord, AuditSeal
from lookout.identity.models import Person

SEALER_LOCK = 0x5EA1E4  # advisory lock key: one sealer at a time


async def fence(conn: AsyncConnection) -> tuple[int, int]:
    """(H, X): the highest sequence number handed out so far, and then a newly assigned
    xid X, which is greater than every xid assigned before H was read. Ends the
    transaction (X must not stay running, or the wait would never pass).

    Not ``pg_snapshot_xmax``: that is latestCompletedXid + 1, so a writer that is still
    running and holds the newest xid can equal it and pass the wait unseen."""
    try:
        high = (
            await conn.execute(
                text("SELECT coalesce(pg_sequence_last_value('audit_records_seq'), 0)")
            )
        ).scalar_one()
        xid = (await conn.execute(text("SELECT pg_current_xact_id()::text::bigint"))).scalar_one()
    finally:
        await conn.rollback()
    return int(high), int(xid)


async def oldest_running_xid(conn: AsyncConnection) -> int:
    """xmin of a fresh snapshot: every transaction with a smaller xid has ended."""
    value = (
        await conn.execute(text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))
    ).scalar_one()
    return int(value)


async def repeatable_read(session: AsyncSession) -> None:
    """One snapshot for the rest of the transaction (must be its first statement)."""
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))


async def try_sealer_lock(session: AsyncSession) -> bool:
    result = await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SEALER_LOCK})
    return bool(result.scalar_one())


async def last_seal(session: AsyncSession) -> tuple[int, bytes] | None:
    row = (
        await session.execute(select(AuditSeal.seq, AuditSeal.hash).order_by(AuditSeal.seq.desc()))
    ).first()
    return (int(row.seq), bytes(row.hash)) if row else None


_ROW_COLUMNS = (
    AuditRecord.seq,
    AuditRecord.at,
    AuditRecord.actor_org_id,
    AuditRecord.actor_client_id,
    AuditRecord.end_user,
    AuditRecord.action,
    AuditRecord.object_type,
    AuditRecord.object_id,
    AuditRecord.purpose,
    AuditRecord.outcome,
    AuditRecord.request_id,
    AuditRecord.details,
)


async def rows_between(session: AsyncSession, after: int, through: int, limit: int) -> list[Row]:
    """Committed records with ``after < seq <= through``, in sequence order."""
    result = await session.execute(
        select(*_ROW_COLUMNS)
        .where(AuditRecord.seq > after, AuditRecord.seq <= through)
        .order_by(AuditRecord.seq)
        .limit(limit)
    )
    return [Row(*r) for r in result]


async def rows_in_range(session: AsyncSession, lo: int, hi: int) -> list[Row]:
    """Records with ``lo <= seq < hi``."""
    result = await session.execute(
        select(*_ROW_COLUMNS)
        .where(AuditRecord.seq >= lo, AuditRecord.seq < hi)
        .order_by(AuditRecord.seq)
    )
    return [Row(*r) for r in result]


async def seals_in_range(session: AsyncSession, lo: int, hi: int) -> list[tuple[int, bytes]]:
    result = await session.execute(
        select(AuditSeal.seq, AuditSeal.hash)
        .where(AuditSeal.seq >= lo, AuditSeal.seq < hi)
        .order_by(AuditSeal.seq)
    )
    return [(int(s), bytes(h)) for s, h in result]


async def max_seqs(session: AsyncSession) -> tuple[int, int]:
    """(highest record seq, highest sealed seq), 0 when empty."""
    records = (await session.execute(select(func.coalesce(func.max(AuditRecord.seq), 0)))).scalar()
    seals = (await session.execute(select(func.coalesce(func.max(AuditSeal.seq), 0)))).scalar()
    return int(records or 0), int(seals or 0)


async def insert_seals(session: AsyncSession, seals: Sequence[tuple[int, bytes]]) -> None:
    if seals:
        await session.execute(insert(AuditSeal), [{"seq": s, "hash": h} for s, h in seals])


async def last_checkpoint(session: AsyncSession) -> AuditCheckpoint | None:
    result = await session.execute(
        select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
    )
    return result.scalar_one_or_none()


async def checkpoints(session: AsyncSession) -> list[AuditCheckpoint]:
    result = await session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.id))
    return list(result.scalars())


async def add_checkpoint(
    session: AsyncSession,
    *,
    seq: int,
    head_hash: bytes,
    created_at: datetime,
    key_id: str,
    signature: bytes,
) -> None:
    await session.execute(
        insert(AuditCheckpoint).values(
            seq=seq, head_hash=head_hash, created_at=created_at, key_id=key_id, signature=signature
        )
    )


@dataclass(frozen=True, slots=True)
class Filters:
    actor_org_id: str | None = None
    actor_client_id: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def page(
    session: AsyncSession, filters: Filters, *, after_seq: int, limit: int
) -> list[AuditRecord]:
    """Records in ascending sequence after ``after_seq``; ``until`` is exclusive."""
    query = select(AuditRecord).where(AuditRecord.seq > after_seq)
    if filters.actor_org_id is not None:
        query = query.where(AuditRecord.actor_org_id == filters.actor_org_id)
    if filters.actor_client_id is not None:
        query = query.where(AuditRecord.actor_client_id == filters.actor_client_id)
    if filters.action is not None:
        query = query.where(AuditRecord.action == filters.action)
    if filters.object_type is not None:
        query = query.where(AuditRecord.object_type == filters.object_type)
    if filters.object_id is not None:
        query = query.where(AuditRecord.object_id == filters.object_id)
    if filters.since is not None:
        query = query.where(AuditRecord.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditRecord.at < filters.until)
    rows = await session.execute(query.order_by(AuditRecord.seq).limit(limit))
    return list(rows.scalars())


async def person_exists(session: AsyncSession, person_id: int) -> bool:
    found = await session.execute(select(Person.id).where(Person.id == person_id))
    return found.scalar_one_or_none() is not None


async def alerts_about(session: AsyncSession, person_id: int) -> list[Alert]:
    """Alerts whose ``children`` name the person (purged alerts no longer do)."""
    rows = await session.execute(
        select(Alert)
        .where(Alert.children.contains([person_id]))
        .order_by(Alert.created_at, Alert.id)
    )
    return list(rows.scalars())


async def access_to_alerts(
    session: AsyncSession, alert_ids: Sequence[str], limit: int
) -> list[AuditRecord]:
    """Audit records that read, listed or otherwise acted on any of these alerts."""
    if not alert_ids:
        return []
    ids = list(alert_ids)
    rows = await session.execute(
        select(AuditRecord)
        .where(
            or_(
                and_(AuditRecord.object_type == "alert", AuditRecord.object_id.in_(ids)),
                AuditRecord.details["alerts"].has_any(cast(ids, ARRAY(String))),
            )
        )
        .order_by(AuditRecord.seq)
        .limit(limit)
    )
    return list(rows.scalars())
