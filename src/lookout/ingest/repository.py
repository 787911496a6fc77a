"""SQL for accepted events, rejections and the worker's stored offsets."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.db import column_arrays, fetch
from lookout.ingest.models import ConsumerOffset, Event, Rejection
from lookout.orgs.models import OrgKind


async def agencies_by_source(session: AsyncSession, sources: Iterable[str]) -> dict[str, str]:
    """The organisation id registered for each ``source`` URI (agencies only)."""
    wanted = list(set(sources))
    if not wanted:
        return {}
    rows = await fetch(
        session,
        "SELECT source, id FROM organisations WHERE kind = $1 AND source = ANY($2::text[])",
        OrgKind.agency.value,
        wanted,
    )
    return {r[0]: r[1] for r in rows}


# (source, id) pairs as two arrays: one prepared statement whatever the batch size, and
# index joins rather than an IN list of thousands of row constructors to plan. A retraction
# is found by the partial index on (source, facts ->> 'retracts').
_EARLIER = """
    SELECT k.source, k.event_id, e.content_hash, r.id
    FROM unnest($1::text[], $2::text[]) AS k(source, event_id)
    LEFT JOIN events e ON e.source = k.source AND e.event_id = k.event_id
    LEFT JOIN LATERAL (
        SELECT r.id FROM events r
        WHERE r.type = 'uk.lookout.event.retraction.v1'
          AND r.source = k.source AND r.facts ->> 'retracts' = k.event_id
        ORDER BY r.id LIMIT 1
    ) r ON true
    WHERE e.id IS NOT NULL OR r.id IS NOT NULL
"""


@dataclass(frozen=True, slots=True)
class Earlier:
    """What arrived before for one (source, id): the content hash of the event accepted
    with it, and the first retraction aimed at it (its pk); either may be None."""

    content_hash: bytes | None
    retraction: int | None


async def earlier(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Earlier]:
    """For each of these (source, id) with an accepted event or a retraction aimed at it
    (a retraction may arrive before its target), what arrived; one statement."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await fetch(session, _EARLIER, [k[0] for k in wanted], [k[1] for k in wanted])
    return {(r[0], r[1]): Earlier(r[2], r[3]) for r in rows}


_INSERT_EVENTS = """
    INSERT INTO events (source, event_id, type, event_time, subject_ref, content_hash,
        subject_person_id, household_id, data, facts, retracted_by, kafka_partition,
        kafka_offset)
    SELECT source, event_id, type, event_time, subject_ref, content_hash, subject_person_id,
        household_id, data::jsonb, facts::jsonb, retracted_by, kafka_partition, kafka_offset
    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
        $6::bytea[], $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::bigint[],
        $12::int[], $13::bigint[])
        AS r(source, event_id, type, event_time, subject_ref, content_hash, subject_person_id,
            household_id, data, facts, retracted_by, kafka_partition, kafka_offset)
    RETURNING id, source, event_id
"""
_EVENT_COLUMNS = (
    "source",
    "event_id",
    "type",
    "event_time",
    "subject_ref",
    "content_hash",
    "subject_person_id",
    "household_id",
    "data",
    "facts",
    "retracted_by",
    "kafka_partition",
    "kafka_offset",
)
_JSON_COLUMNS = frozenset({"data", "facts"})


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (distinct (source, event_id) pairs) in one statement, the columns as
    arrays; their ids, in ``rows``' order (matched by the unique (source, event_id): the
    order of ``RETURNING`` is not promised)."""
    if not rows:
        return []
    columns = column_arrays(rows, _EVENT_COLUMNS, _JSON_COLUMNS)
    ids = {(r[1], r[2]): r[0] for r in await fetch(session, _INSERT_EVENTS, *columns)}
    return [ids[(row["source"], row["event_id"])] for row in rows]


@dataclass(frozen=True, slots=True)
class Retracted:
    event_pk: int
    type: str
    subject_person_id: int | None


async def retract(session: AsyncSession, source: str, event_id: str, by: int) -> Retracted | None:
    result = await session.execute(
        update(Event)
        .where(Event.source == source, Event.event_id == event_id, Event.retracted_by.is_(None))
        .values(retracted_by=by)
        .returning(Event.id, Event.type, Event.subject_person_id)
    )
    row = result.one_or_none()
    return Retracted(row.id, row.type, row.subject_person_id) if row else None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    pk: int
    source: str
    event_id: str
    type: str
    time: datetime
    data: dict[str, Any]
    subject_person_id: int | None
    household_id: int | None
    # Every person the event names, in the order of ``person_refs`` (when it names more
    # than its subject); the roles come from the payload.
    persons: tuple[int, ...] = ()


async def events_of(
    session: AsyncSession,
    person_ids: Iterable[int],
    types: Iterable[str],
    since: datetime,
    until: datetime | None = None,
    household_ids: Iterable[int] = (),
) -> list[StoredEvent]:
    """Unretracted events of these types about these persons, or recorded at these
    households' addresses, from ``since`` (to ``until``)."""
    ids, kinds, homes = list(set(person_ids)), list(set(types)), list(set(household_ids))
    if not (ids or homes) or not kinds:
        return []
    args: list[Any] = [ids, kinds, since]
    if until is not None:
        args.append(until)
    if homes:
        args.append(homes)
    rows = await fetch(session, _EVENTS_OF[(until is not None, bool(homes))], *args)
    return [
        StoredEvent(
            pk, source, event_id, type_, time, data, subject, household, tuple(persons or ())
        )
        for pk, source, event_id, type_, time, data, subject, household, persons in rows
    ]


def _events_of(until: bool, homes: bool) -> str:
    whose = "subject_person_id = ANY($1)"
    if homes:
        whose = f"({whose} OR household_id = ANY(${5 if until else 4}))"
    return (
        "SELECT id, source, event_id, type, event_time, data, subject_person_id,"  # noqa: S608 - constants
        f" household_id, facts -> 'persons' FROM events WHERE {whose}"
        " AND type = ANY($2::text[]) AND event_time >= $3"
        + (" AND event_time <= $4" if until else "")
        + " AND retracted_by IS NULL AND data IS NOT NULL"
    )


# One statement per combination of the optional filters (an ``until``, households).
_EVENTS_OF = {(u, h): _events_of(u, h) for u in (False, True) for h in (False, True)}


_GRAPH_EVENT_TYPES = (
    "uk.lookout.person.residence.v1",
    "uk.lookout.person.relationship.v1",
    "uk.lookout.education.enrolment.v1",
    "uk.lookout.social_care.child_protection_plan.v1",
    "uk.lookout.social_care.looked_after.v1",
)


async def stored_cloudevents(
    session: AsyncSession, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """Stored events as CloudEvents (for backtests): every event of the household graph
    (residences, relationships, enrolments, plans, looked-after periods), whatever its
    time, and every other event in [since, until]. Events whose payload was purged are
    left out."""
    rows = await session.execute(
        select(
            Event.source,
            Event.event_id,
            Event.type,
            Event.event_time,
            Event.subject_ref,
            Event.data,
        ).where(
            Event.data.is_not(None),
            Event.retracted_by.is_(None),
            Event.type.in_(_GRAPH_EVENT_TYPES)
            | ((Event.event_time >= since) & (Event.event_time <= until)),
        )
    )
    return [
        {
            "specversion": "1.0",
            "source": r.source,
            "id": r.event_id,
            "type": r.type,
            "time": r.event_time.isoformat(),
            "subject": r.subject_ref,
            "data": r.data,
        }
        for r in rows
    ]


_REJECTION_COLUMNS = (
    "id",
    "reason",
    "detail",
    "source",
    "event_id",
    "event_type",
    "raw",
    "kafka_key",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
)
_INSERT_REJECTIONS = """
    INSERT INTO rejections (id, reason, detail, source, event_id, event_type, raw, kafka_key,
        kafka_topic, kafka_partition, kafka_offset)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::bytea[], $8::bytea[], $9::text[], $10::int[], $11::bigint[])
"""


async def insert_rejections(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rejection rows (one statement, the columns as arrays)."""
    if rows:
        await fetch(session, _INSERT_REJECTIONS, *column_arrays(rows, _REJECTION_COLUMNS))


async def unpublished_rejections(session: AsyncSession, limit: int) -> list[Rejection]:
    rows = await session.execute(
        select(Rejection)
        .where(Rejection.dlq_published_at.is_(None))
        .order_by(Rejection.created_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def mark_published(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """Record that these rejections' DLQ copies were acknowledged."""
    if ids:
        await fetch(
            session,
            "UPDATE rejections SET dlq_published_at = now() WHERE id = ANY($1::uuid[])",
            list(ids),
        )


async def rejection_counts(session: AsyncSession) -> tuple[int, int]:
    """(all rejections, those whose DLQ copy is still pending)."""
    row = (
        await session.execute(
            select(func.count(), func.count().filter(Rejection.dlq_published_at.is_(None)))
        )
    ).one()
    return int(row[0]), int(row[1])


async def last_event_by_source(session: AsyncSession) -> list[tuple[str, datetime]]:
    rows = await session.execute(
        select(Event.source, func.max(Event.received_at))
        .group_by(Event.source)
        .order_by(Event.source)
    )
    return [(source, at) for source, at in rows]


async def all_positions(session: AsyncSession, group_id: str, topic: str) -> dict[int, Position]:
    rows = await session.execute(
        select(
            ConsumerOffset.partition, ConsumerOffset.cluster_id, ConsumerOffset.next_offset
        ).where(ConsumerOffset.group_id == group_id, ConsumerOffset.topic == topic)
    )
    return {r.partition: Position(r.cluster_id, r.next_offset) for r in rows}


# Offsets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """What the worker believes is stored for a partition: the compare-and-set's expectation."""

    cluster_id: str
    next_offset: int


async def stored_positions(
    session: AsyncSession, group_id: str, topic: str, partitions: Iterable[int]
) -> dict[int, Position]:
    rows = await session.execute(
        select(
            ConsumerOffset.partition, ConsumerOffset.cluster_id, ConsumerOffset.next_offset
        ).where(
            ConsumerOffset.group_id == group_id,
            ConsumerOffset.topic == topic,
            ConsumerOffset.partition.in_(list(partitions)),
        )
    )
    return {r.partition: Position(r.cluster_id, r.next_offset) for r in rows}


@dataclass(frozen=True, slots=True)
class OffsetMove:
    """One partition's stored offset to move from ``expected`` (None: nothing stored yet)
    to ``new``."""

    topic: str
    partition: int
    expected: Position | None
    new: Position


# One statement for every partition of a batch: each row is an UPDATE guarded by the
# expected position or, with nothing expected, an INSERT that a stored row defeats. A
# partition missing from the result was moved by someone else.
_MOVE_OFFSETS = """
    WITH wanted AS (
        SELECT * FROM unnest(
            $2::text[], $3::int[], $4::text[], $5::bigint[], $6::text[], $7::bigint[]
        ) AS w(topic, partition, expected_cluster, expected_offset, cluster_id, next_offset)
    ), updated AS (
        UPDATE consumer_offsets o
        SET cluster_id = w.cluster_id, next_offset = w.next_offset, updated_at = now()
        FROM wanted w
        WHERE w.expected_offset IS NOT NULL
          AND o.group_id = $1 AND o.topic = w.topic AND o.partition = w.partition
          AND o.cluster_id = w.expected_cluster AND o.next_offset = w.expected_offset
        RETURNING o.topic, o.partition
    ), inserted AS (
        INSERT INTO consumer_offsets (group_id, topic, partition, cluster_id, next_offset)
        SELECT $1, w.topic, w.partition, w.cluster_id, w.next_offset
        FROM wanted w WHERE w.expected_offset IS NULL
        ON CONFLICT DO NOTHING
        RETURNING topic, partition
    )
    SELECT topic, partition FROM updated UNION ALL SELECT topic, partition FROM inserted
"""


async def compare_and_set_offsets(
    session: AsyncSession, group_id: str, moves: Sequence[OffsetMove]
) -> list[OffsetMove]:
    """Move each stored offset from its expected position to its new one, in one
    statement; return the moves that failed because someone else moved the offset."""
    if not moves:
        return []
    rows = await fetch(
        session,
        _MOVE_OFFSETS,
        group_id,
        [m.topic for m in moves],
        [m.partition for m in moves],
        [m.expected.cluster_id if m.expected else None for m in moves],
        [m.expected.next_offset if m.expected else None for m in moves],
        [m.new.cluster_id for m in moves],
        [m.new.next_offset for m in moves],
    )
    moved = {(r[0], r[1]) for r in rows}
    return [m for m in moves if (m.topic, m.partition) not in moved]


async def compare_and_set_offset(
    session: AsyncSession,
    group_id: str,
    topic: str,
    partition: int,
    expected: Position | None,
    new: Position,
) -> bool:
    """Move one stored offset from ``expected`` to ``new``; False if someone else moved it."""
    move = OffsetMove(topic, partition, expected, new)
    return not await compare_and_set_offsets(session, group_id, [move])


# Rejections for publishers and operators -------------------------------------------


async def rejections_page(
    session: AsyncSession,
    *,
    source: str | None,
    limit: int,
    before: uuid.UUID | None,
    reason: str | None,
) -> list[Rejection]:
    """Newest first. ``source`` None = every publisher's (operators only)."""
    query = select(Rejection)
    if source is not None:
        query = query.where(Rejection.source == source)
    if reason is not None:
        query = query.where(Rejection.reason == reason)
    if before is not None:
        anchor = select(Rejection.created_at).where(Rejection.id == before).scalar_subquery()
        query = query.where(tuple_(Rejection.created_at, Rejection.id) < tuple_(anchor, before))
    rows = await session.execute(
        query.order_by(Rejection.created_at.desc(), Rejection.id.desc()).limit(limit)
    )
    return list(rows.scalars())


async def rejection(session: AsyncSession, rejection_id: uuid.UUID) -> Rejection | None:
    return await session.get(Rejection, rejection_id)
