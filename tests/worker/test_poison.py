"""An event that fails processing on its own, with an error retrying does not cure, never
stops its partition: the worker splits the batch until the event is alone, rejects it
(``processing_failed``, copied to the dead-letter topic) and processes everything else.
An error of the environment (here: a privilege the database refuses for every event) is
not blamed on events: the worker stops, and nothing is rejected.

The failures are real: a PostgreSQL trigger on ``events`` raises for the chosen rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.cli.test_cli import lookout
from tests.conftest import RunningWorker
from tests.e2e.test_publish_to_alert import caught_up, count, publish, wait_for
from tests.factories import moved_in, person, register_orgs, years_before

from lookout import metrics
from lookout.audit.models import AuditRecord
from lookout.ingest.models import ConsumerOffset, Event, Rejection
from lookout.pipeline import Fenced
from lookout.settings import Settings
from lookout.worker import _event_specific, _retriable


async def poison_trigger(
    sessions: async_sessionmaker[AsyncSession], condition: str, code: str
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'refused' USING ERRCODE = '{code}'; "
                "END IF; RETURN NEW; END $$"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER poison BEFORE INSERT ON events "
                "FOR EACH ROW EXECUTE FUNCTION poison()"
            )
        )


async def test_a_poison_event_is_rejected_and_the_rest_of_its_batch_is_processed(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await register_orgs(sessions)
    on = years_before(datetime.now(UTC), 1)
    events = [moved_in(person(), on) for _ in range(7)]
    poison = events[3]["id"]
    await poison_trigger(sessions, f"NEW.event_id = '{poison}'", "22023")
    splits = metrics.BATCH_SPLITS._value.get()
    await publish(settings, events)  # before the worker starts: one batch holds them all

    running = RunningWorker(settings)
    await running.start()
    assert running.task is not None
    await wait_for(lambda: caught_up(sessions, settings, len(events)), within_s=60)
    await wait_for(lambda: count(sessions, Rejection, Rejection.dlq_published_at.is_not(None)))
    assert not running.task.done(), "the worker stopped"

    async with sessions() as session:
        stored = set((await session.execute(select(Event.event_id))).scalars())
        [rejection] = (await session.execute(select(Rejection))).scalars().all()
        audited = (
            await session.execute(
                select(AuditRecord.outcome).where(AuditRecord.object_id == str(rejection.id))
            )
        ).scalar_one()
    assert stored == {e["id"] for e in events} - {poison}
    assert (rejection.reason, rejection.event_id) == ("processing_failed", poison)
    # The error's class and SQLSTATE, never its message.
    assert rejection.detail.startswith("processing failed (InvalidParameterValueError[22023])")
    assert audited == "processing_failed"
    assert metrics.BATCH_SPLITS._value.get() > splits

    # The cause fixed, the operator replays it: nothing was lost.
    async with sessions() as session, session.begin():
        await session.execute(text("DROP TRIGGER poison ON events"))
    replayed = await asyncio.to_thread(
        lookout,
        settings,
        *("dlq", "replay", "--code", "processing_failed", "--by", "on-call", "--reason", "fixed"),
    )
    assert replayed.returncode == 0, replayed.stderr
    await wait_for(lambda: count(sessions, Event, Event.event_id == poison))
    await running.stop()


async def test_an_error_of_the_environment_stops_the_worker_and_rejects_nothing(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await register_orgs(sessions)
    await poison_trigger(sessions, "true", "42501")  # insufficient_privilege, for every event
    on = years_before(datetime.now(UTC), 1)
    await publish(settings, [moved_in(person(), on) for _ in range(3)])

    running = RunningWorker(settings)
    await running.start()
    assert running.task is not None
    done, _ = await asyncio.wait({running.task}, timeout=60)
    assert done, "the worker kept going"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        running.task.result()
    assert await count(sessions, Rejection) == 0
    assert await count(sessions, Event) == 0
    async with sessions() as session:
        offsets = (await session.execute(select(ConsumerOffset.next_offset))).scalars().all()
    assert all(offset == 0 for offset in offsets)


def test_which_errors_an_event_can_cause() -> None:
    assert _event_specific(KeyError("a defect met by some input"))
    assert _event_specific(RecursionError())
    assert not _event_specific(MemoryError())
    assert not _event_specific(Fenced("events[0]"))  # the partition moved: not a failure


def test_which_errors_are_retried_whichever_layer_raised_them() -> None:
    """The worker's reads that bypass SQLAlchemy (``lookout.db.fetch``) raise asyncpg's own
    errors: a deadlock or a lost connection is retried like its SQLAlchemy-wrapped form."""
    assert _retriable(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
    assert _retriable(asyncpg.exceptions.SerializationError("could not serialize"))
    assert _retriable(asyncpg.exceptions.ConnectionDoesNotExistError("connection lost"))
    assert _retriable(ConnectionResetError())
    assert not _retriable(asyncpg.exceptions.InsufficientPrivilegeError("permission denied"))
    assert not _retriable(asyncpg.exceptions.CheckViolationError("a value the table refuses"))
    assert not _retriable(KeyError("a defect"))
