"""``lookout sealer``, ``lookout audit seal|verify`` and ``lookout retention run`` as real
processes against the test database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import TEST_ACTOR

from lookout.audit.actions import Action
from lookout.audit.models import AuditRecord, AuditSeal
from lookout.audit.service import Entry, record
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


def _env(settings: Settings, state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LOOKOUT_DATABASE_URL": settings.database_url,
        "LOOKOUT_STATE_DIR": str(state),
        "LOOKOUT_AUDIT_SEAL_INTERVAL_S": "0.2",
        "LOOKOUT_LOG_JSON": "false",
        "LOOKOUT_SEALER_METRICS_PORT": "0",
    }


def lookout(settings: Settings, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookout", *args],
        env=_env(settings, state),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def write(sessions: async_sessionmaker[AsyncSession], n: int) -> None:
    async with sessions() as session, session.begin():
        await record(session, TEST_ACTOR, [Entry(Action.alert_read, "alert", "a")] * n)


async def test_seal_verify_and_a_tampered_trail_fails(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await write(sessions, 4)
    sealed = lookout(settings, tmp_path, "audit", "seal")
    assert sealed.returncode == 0, sealed.stderr
    assert "sealed 4 record(s)" in sealed.stdout
    assert "checkpoint signed at seq 4" in sealed.stdout

    intact = lookout(settings, tmp_path, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    assert "audit trail intact" in intact.stdout

    async with sessions() as session, session.begin():
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        await session.execute(text("DELETE FROM audit_records WHERE seq = 2"))
    broken = lookout(settings, tmp_path, "audit", "verify", "--json")
    assert broken.returncode == 1
    report = orjson.loads(broken.stdout)
    assert report["first_bad_seq"] == 2
    assert "deleted" in report["problem"]
    async with sessions() as session:
        verified = (
            await session.execute(
                select(AuditRecord.outcome).where(AuditRecord.action == "operator:audit:verified")
            )
        ).scalars()
        assert sorted(verified) == ["failed", "ok"]


async def test_the_sealer_process_seals_as_records_arrive_and_signs_on_stop(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    proc = subprocess.Popen(  # noqa: ASYNC220 - a child we watch while the test writes
        [sys.executable, "-m", "lookout", "sealer"],
        env=_env(settings, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await write(sessions, 3)
        deadline = time.monotonic() + 30
        sealed = 0
        while time.monotonic() < deadline and sealed < 3:
            async with sessions() as session:
                sealed = (
                    await session.execute(select(func.count()).select_from(AuditSeal))
                ).scalar_one()
            await asyncio.sleep(0.1)
        assert sealed == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    files = list((tmp_path / "audit-checkpoints").glob("checkpoint-*.json"))
    assert [orjson.loads(f.read_bytes())["seq"] for f in files] == [3]


async def test_retention_run_reports_what_it_purged(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    ran = lookout(settings, tmp_path, "retention", "run")
    assert ran.returncode == 0, ran.stderr
    assert "purged: 0 event payload(s), 0 closed alert(s), 0 rejection(s)" in ran.stdout
