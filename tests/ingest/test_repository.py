"""``insert_events`` returns each row's id in the order of the rows, whatever mix of NULLs
the rows carry (the ORM would otherwise split them into runs of equal shape)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout.ingest import repository
from lookout.ingest.models import Event


def _row(n: int) -> dict[str, Any]:
    return {
        "source": "urn:lookout:agency:test",
        "event_id": f"evt-{n}",
        "type": "uk.lookout.health.ed_attendance.v1",
        "event_time": datetime(2026, 11, 1, tzinfo=UTC),
        "subject_ref": f"ref-{n}",
        "content_hash": bytes([n % 256]) * 32,
        "subject_person_id": None,
        "household_id": None,
        "data": {"n": n} if n % 3 else None,
        "facts": {},
        "retracted_by": n if n % 2 else None,
        "kafka_partition": 0,
        "kafka_offset": n,
    }


async def test_ids_follow_the_rows(sessions: async_sessionmaker[AsyncSession]) -> None:
    rows = [_row(n) for n in (5, 1, 4, 2, 3, 8, 7, 6)]
    async with sessions() as session, session.begin():
        ids = await repository.insert_events(session, rows)
        stored = dict(
            (await session.execute(select(Event.id, Event.event_id).where(Event.id.in_(ids)))).all()
        )
    assert len(set(ids)) == len(rows)
    assert [stored[i] for i in ids] == [r["event_id"] for r in rows]


async def test_earlier_events_and_retractions(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    stored = [_row(n) for n in (1, 2, 3)]
    retraction = _row(9) | {
        "event_id": "retract-2",
        "type": "uk.lookout.event.retraction.v1",
        "facts": {"retracts": "evt-2"},
    }
    async with sessions() as session, session.begin():
        ids = await repository.insert_events(session, [*stored, retraction])
        source = stored[0]["source"]
        # A second retraction of evt-2, and a retraction of an event not yet arrived.
        later = await repository.insert_events(
            session,
            [
                retraction | {"event_id": "retract-2b", "kafka_offset": 10},
                retraction
                | {"event_id": "retract-5", "facts": {"retracts": "evt-5"}, "kafka_offset": 11},
            ],
        )
        keys = [
            (source, "evt-1"),
            (source, "evt-2"),
            (source, "evt-3"),
            (source, "evt-5"),
            (source, "evt-404"),
            ("other", "evt-2"),
        ]
        found = await repository.earlier(session, keys)
    assert found == {
        (source, "evt-1"): repository.Earlier(stored[0]["content_hash"], None),
        (source, "evt-2"): repository.Earlier(stored[1]["content_hash"], ids[3]),
        (source, "evt-3"): repository.Earlier(stored[2]["content_hash"], None),
        (source, "evt-5"): repository.Earlier(None, later[1]),
    }


async def test_offsets_of_several_partitions_move_in_one_compare_and_set(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Each partition is guarded by its own expectation: a first write, a move from the
    stored position, and a stale expectation (someone else moved it), in one statement."""
    group, topic = "cas-group", "cas-topic"
    at = repository.Position
    async with sessions() as session, session.begin():
        first = [repository.OffsetMove(topic, p, None, at("c1", 10)) for p in (0, 1, 2)]
        assert await repository.compare_and_set_offsets(session, group, first) == []
    async with sessions() as session, session.begin():
        stale = repository.OffsetMove(topic, 2, at("c1", 7), at("c1", 30))
        moves = [
            repository.OffsetMove(topic, 0, at("c1", 10), at("c1", 20)),
            repository.OffsetMove(topic, 1, None, at("c1", 99)),  # already stored
            stale,
            repository.OffsetMove(topic, 3, None, at("c1", 5)),
        ]
        failed = await repository.compare_and_set_offsets(session, group, moves)
        assert [(m.partition, m.expected) for m in failed] == [(1, None), (2, at("c1", 7))]
    async with sessions() as session:
        stored = await repository.stored_positions(session, group, topic, [0, 1, 2, 3])
    assert stored == {0: at("c1", 20), 1: at("c1", 10), 2: at("c1", 10), 3: at("c1", 5)}
