"""The sealer on a real PostgreSQL: append-only tables, the fence, chaining, checkpoints."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import TEST_ACTOR, seal, with_state_dir

from lookout.audit import signing
from lookout.audit.actions import Action
from lookout.audit.models import AuditCheckpoint, AuditSeal
from lookout.audit.service import Entry, record
from lookout.audit.verify import verify
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


async def write(sessions: async_sessionmaker[AsyncSession], n: int = 1) -> None:
    async with sessions() as session, session.begin():
        await record(
            session,
            TEST_ACTOR,
            [Entry(Action.alert_read, "alert", f"a-{i}", details={"i": i}) for i in range(n)],
        )


async def seals(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessions() as session:
        return list(
            (await session.execute(select(AuditSeal.seq).order_by(AuditSeal.seq))).scalars()
        )


@pytest.mark.parametrize("table", ["audit_records", "audit_seals", "audit_checkpoints"])
@pytest.mark.parametrize(
    "statement", ["UPDATE {t} SET seq = seq", "DELETE FROM {t}", "TRUNCATE {t}"]
)
async def test_audit_tables_refuse_update_delete_and_truncate(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    table: str,
    statement: str,
) -> None:
    await write(sessions, 2)
    await seal(with_state_dir(settings, tmp_path))
    async with sessions() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(text(statement.format(t=table)))


async def test_the_writer_cannot_choose_its_sequence_number(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO audit_records (seq, action, outcome, details) "
                "VALUES (999, 'x:y:z', 'ok', '{}')"
            )
        )
        seq, xid = (await session.execute(text("SELECT seq, xid::text FROM audit_records"))).one()
        assert seq != 999
        own = (await session.execute(text("SELECT pg_current_xact_id()::text"))).scalar_one()
        assert xid == own


async def test_seal_chains_every_record_and_signs_a_checkpoint_file(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    settings = with_state_dir(settings, tmp_path)
    await write(sessions, 5)
    first = await seal(settings)
    assert first.sealed == 5
    assert first.checkpoint_seq == first.head_seq
    await write(sessions, 3)
    second = await seal(settings)
    assert second.sealed == 3
    assert await seals(sessions) == list(range(1, 9))

    key_file = tmp_path / "audit_signing_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    files = sorted((tmp_path / "audit-checkpoints").glob("checkpoint-*.json"))
    assert len(files) == 2
    doc = orjson.loads(files[-1].read_bytes())
    assert doc["seq"] == 8
    async with sessions() as session:
        head = (await session.execute(select(AuditSeal.hash).where(AuditSeal.seq == 8))).scalar()
    assert head is not None
    assert doc["head"] == bytes(head).hex()
    async with sessions() as session:
        report = await verify(session, signing.verify_key(settings), tmp_path / "audit-checkpoints")
    assert report.ok, report.problem
    assert report.records_checked == 8
    assert report.checkpoints_checked == 2


@pytest.mark.parametrize("later_commits_first", [True, False])
async def test_an_open_transaction_holds_back_its_record_and_every_later_one(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    later_commits_first: bool,
) -> None:
    """Seq order is not commit order: a record committed after a later one still gets its
    place in the chain, because nothing at or above the open transaction's seq is sealed.

    Without a later commit, the open writer holds the newest xid, so a snapshot's xmax
    (latestCompletedXid + 1) equals it: a fence built on xmax let the sealer pass it and
    seal around its seq (a CI failure). The fence takes a fresh xid instead."""
    settings = with_state_dir(settings, tmp_path)
    impatient = settings.model_copy(update={"audit_seal_wait_s": 0.3})
    await write(sessions, 2)  # seq 1, 2
    async with sessions() as slow:
        await slow.begin()
        await record(slow, TEST_ACTOR, [Entry(Action.alert_read, "alert", "slow")])  # seq 3
        if later_commits_first:
            await write(sessions, 1)  # seq 4, committed first
        held = await seal(impatient)
        assert held.waiting
        assert await seals(sessions) == []
        await slow.commit()
    done = await seal(settings)
    assert not done.waiting
    assert await seals(sessions) == ([1, 2, 3, 4] if later_commits_first else [1, 2, 3])
    async with sessions() as session:
        report = await verify(session, signing.verify_key(settings))
    assert report.ok, report.problem


async def test_a_rolled_back_record_leaves_a_gap_that_verifies(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    settings = with_state_dir(settings, tmp_path)
    await write(sessions, 1)
    async with sessions() as session, session.begin():
        await record(session, TEST_ACTOR, [Entry(Action.alert_read, "alert", "gone")])
        await session.rollback()
    await write(sessions, 1)
    await seal(settings)
    assert await seals(sessions) == [1, 3]
    async with sessions() as session:
        report = await verify(session, signing.verify_key(settings))
        checkpoints = (
            await session.execute(select(func.count()).select_from(AuditCheckpoint))
        ).scalar_one()
    assert report.ok, report.problem
    assert checkpoints == 1


async def test_checkpoints_without_a_verify_key_do_not_pass(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await write(sessions, 1)
    await seal(with_state_dir(settings, tmp_path))
    async with sessions() as session:
        report = await verify(session, None)
    assert not report.ok
    assert "LOOKOUT_AUDIT_VERIFY_KEY" in (report.problem or "")


async def test_the_sealer_verifies_periodically_and_counts_the_result(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    from prometheus_client import REGISTRY

    from lookout.audit.sealer import verify_periodically
    from lookout.db import create_engine

    configured = with_state_dir(settings, tmp_path)
    await write(sessions, 3)
    await seal(configured)

    def failed() -> float:
        return (
            REGISTRY.get_sample_value("lookout_audit_verifications_total", {"result": "failed"})
            or 0.0
        )

    before = failed()
    engine = create_engine(configured.database_url, pool_size=1)
    try:
        assert await verify_periodically(engine, configured)
        async with sessions() as session, session.begin():
            await session.execute(text("ALTER TABLE audit_records DISABLE TRIGGER USER"))
            await session.execute(text("UPDATE audit_records SET outcome = 'forged' WHERE seq = 2"))
            await session.execute(text("ALTER TABLE audit_records ENABLE TRIGGER USER"))
        assert not await verify_periodically(engine, configured)
    finally:
        await engine.dispose()
    assert failed() == before + 1


async def test_concurrent_writers_and_a_running_sealer_give_a_complete_valid_chain(
    settings: Settings, tmp_path: Path
) -> None:
    """Writers commit out of seq order (random pauses inside their transactions, some roll
    back) while the sealer loops; at the end every committed record is sealed exactly
    once, in order, and the chain verifies."""
    import asyncio
    import random

    from lookout.audit.sealer import run_sealer
    from lookout.db import create_engine, session_factory

    settings = with_state_dir(settings, tmp_path).model_copy(
        update={"audit_seal_interval_s": 0.05, "sealer_metrics_port": 0}
    )
    engine = create_engine(settings.database_url, pool_size=10)
    sessions = session_factory(engine)
    rng = random.Random(6)
    stop = asyncio.Event()
    sealer = asyncio.create_task(run_sealer(settings, stop))
    committed = 0

    async def writer(w: int) -> None:
        nonlocal committed
        for i in range(15):
            pause = rng.random() / 50
            async with sessions() as session:
                await session.begin()
                await record(session, TEST_ACTOR, [Entry(Action.alert_read, "alert", f"{w}-{i}")])
                await asyncio.sleep(pause)
                if rng.random() < 0.2:
                    await session.rollback()
                else:
                    await session.commit()
                    committed += 1

    try:
        await asyncio.gather(*(writer(w) for w in range(8)))
    finally:
        stop.set()
        await asyncio.wait_for(sealer, 60)
    async with sessions() as session:
        report = await verify(session, signing.verify_key(settings))
    await engine.dispose()
    assert report.ok, report.problem
    assert report.records_checked == committed
    assert report.unsealed == 0
