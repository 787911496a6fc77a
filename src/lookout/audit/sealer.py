"""The audit sealer: one process that chains audit records AFTER they commit.

Writers (workers, API replicas, the CLI) only INSERT audit rows in their own transactions;
no writer waits on a global lock. The sealer fills in the hash chain afterwards, in
sequence order, in its own append-only table ``audit_seals`` (audit rows are never
updated), and signs periodic checkpoints (Ed25519) that it stores in
``audit_checkpoints`` and writes as files to ``LOOKOUT_AUDIT_CHECKPOINT_DIR``.

Why sequence order is commit-safe here (the fence rule)
-------------------------------------------------------
Sequence numbers are handed out when a row is inserted, not when its transaction
commits, so a transaction holding seq 10 may commit after one holding seq 11. Chaining
seq 11 before 10 is visible would leave 10 out of the chain for ever (or put it out of
order). The sealer therefore seals only rows that no open transaction can still precede:

1. Fence: read ``H = pg_sequence_last_value('audit_records_seq')``, then (next
   statement) take a new xid ``X = pg_current_xact_id()`` and end that transaction.
   Xids are handed out in increasing order, so X is above every xid assigned before H
   was read. (Not ``pg_snapshot_xmax``: that is latestCompletedXid + 1, which a writer
   still running with the newest xid can equal; the wait below would then pass while
   it is open, and its record would be left out of the chain.)
2. The BEFORE INSERT trigger on ``audit_records`` (migration 0002) gives the writing
   transaction its xid (``pg_current_xact_id()``, kept in the row's ``xid`` column)
   *before* it takes ``nextval``. So every transaction that holds a seq <= H had an xid
   before H was read: its xid is < X.
3. Wait until ``pg_snapshot_xmin(pg_current_snapshot()) >= X``: no transaction with an
   xid below X is still running. Every seq <= H is now final: committed and visible, or
   rolled back and never to appear (a permanent gap).
4. Seal the visible rows with ``last sealed < seq <= H`` in order. Rows above H wait for
   the next pass.

A long-open transaction anywhere in the cluster delays sealing (never correctness);
a pass gives up after ``audit_seal_wait_s`` and the loop tries again. Two sealers never
interleave: each sealing transaction takes an advisory lock, and ``audit_seals.seq`` is
the primary key.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lookout import metrics
from lookout.audit import repository, signing
from lookout.audit.chain import GENESIS, link
from lookout.audit.verify import verify
from lookout.db import create_engine, session_factory
from lookout.logging import safe_error
from lookout.settings import Settings

log = structlog.get_logger("lookout.sealer")

CHUNK = 5_000
_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class SealResult:
    sealed: int  # records sealed in this pass
    head_seq: int  # the last sealed record (0: none yet)
    waiting: bool  # the fence was not passed in time: older transactions still running
    checkpoint_seq: int | None  # a checkpoint signed in this pass


async def _wait_past(engine: AsyncEngine, fence_xid: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    async with engine.connect() as conn:
        while True:
            if await repository.oldest_running_xid(conn) >= fence_xid:
                return True
            await conn.rollback()  # a new snapshot for the next look
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL_S)


async def _seal_through(sessions: async_sessionmaker[AsyncSession], high: int) -> tuple[int, int]:
    """Seal committed records up to ``high``; return (sealed, head seq)."""
    sealed = 0
    while True:
        async with sessions() as session, session.begin():
            if not await repository.try_sealer_lock(session):
                log.warning("sealer.busy", detail="another sealer holds the lock")
                last = await repository.last_seal(session)
                return sealed, last[0] if last else 0
            last = await repository.last_seal(session)
            after, prev = last if last else (0, GENESIS)
            rows = await repository.rows_between(session, after, high, CHUNK)
            seals: list[tuple[int, bytes]] = []
            for row in rows:
                prev = link(row, prev)
                seals.append((row.seq, prev))
            await repository.insert_seals(session, seals)
        sealed += len(seals)
        head = seals[-1][0] if seals else after
        if len(rows) < CHUNK:
            return sealed, head


def _write_file(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


async def _checkpoint(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, *, force: bool
) -> int | None:
    key = signing.signing_key(settings, create=True)
    assert key is not None
    public = key.public_key()
    async with sessions() as session, session.begin():
        if not await repository.try_sealer_lock(session):
            return None
        last = await repository.last_seal(session)
        if last is None:
            return None
        previous = await repository.last_checkpoint(session)
        if previous is not None:
            if previous.seq >= last[0]:
                return None
            age = (datetime.now(UTC) - previous.created_at).total_seconds()
            if not force and age < settings.audit_checkpoint_interval_s:
                return None
        checkpoint = signing.Checkpoint(
            seq=last[0],
            head_hash=last[1],
            created_at=datetime.now(UTC),
            key_id=signing.key_id(public),
        )
        signature = signing.sign(key, checkpoint)
        await repository.add_checkpoint(
            session,
            seq=checkpoint.seq,
            head_hash=checkpoint.head_hash,
            created_at=checkpoint.created_at,
            key_id=checkpoint.key_id,
            signature=signature,
        )
    # After the commit, so a file never names a checkpoint the database does not hold.
    path = signing.checkpoint_dir(settings) / signing.checkpoint_file_name(checkpoint.seq)
    await asyncio.to_thread(
        _write_file, path, signing.checkpoint_document(checkpoint, signature, public)
    )
    metrics.AUDIT_CHECKPOINTS.inc()
    metrics.AUDIT_LAST_CHECKPOINT.set(checkpoint.created_at.timestamp())
    log.info("sealer.checkpoint", seq=checkpoint.seq, file=str(path))
    return checkpoint.seq


async def seal_once(
    engine: AsyncEngine, settings: Settings, *, force_checkpoint: bool = False
) -> SealResult:
    """One pass: fence, wait for older transactions, seal up to the fence, maybe sign."""
    sessions = session_factory(engine)
    async with engine.connect() as conn:
        high, fence_xid = await repository.fence(conn)
    passed = await _wait_past(engine, fence_xid, settings.audit_seal_wait_s)
    sealed, head = 0, 0
    if passed:
        sealed, head = await _seal_through(sessions, high)
    else:
        async with sessions() as session:
            last = await repository.last_seal(session)
            head = last[0] if last else 0
    metrics.AUDIT_SEALED.inc(sealed)
    metrics.AUDIT_SEALED_SEQ.set(head)
    checkpoint = await _checkpoint(sessions, settings, force=force_checkpoint)
    return SealResult(sealed=sealed, head_seq=head, waiting=not passed, checkpoint_seq=checkpoint)


async def verify_periodically(engine: AsyncEngine, settings: Settings) -> bool:
    """Verify every link and checkpoint; count the result (operators alert on failures)."""
    async with session_factory(engine)() as session, session.begin():
        report = await verify(
            session, signing.verify_key(settings), signing.checkpoint_dir(settings)
        )
    metrics.AUDIT_VERIFICATIONS.labels("ok" if report.ok else "failed").inc()
    if not report.ok:
        log.error("sealer.verification_failed", first_bad_seq=report.first_bad_seq)
    return report.ok


async def run_sealer(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Seal every ``audit_seal_interval_s`` until SIGTERM/SIGINT (or ``stop``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            break
    signing.signing_key(settings, create=True)  # fail fast on a bad key
    if settings.sealer_metrics_port:
        try:
            start_http_server(settings.sealer_metrics_port, addr="0.0.0.0")  # noqa: S104
        except OSError as exc:  # sealing matters more than its metrics
            log.warning("sealer.metrics_unavailable", error=safe_error(exc))
    engine = create_engine(settings.database_url, pool_size=2)
    log.info("sealer.started", interval_s=settings.audit_seal_interval_s)
    backoff = 1.0
    next_verify = loop.time() + settings.audit_verify_interval_s
    try:
        while not stop.is_set():
            try:
                if loop.time() >= next_verify:
                    await verify_periodically(engine, settings)
                    next_verify = loop.time() + settings.audit_verify_interval_s
                result = await seal_once(engine, settings)
                backoff = 1.0
                if result.waiting:
                    log.info("sealer.waiting", detail="older transactions are still open")
                delay = settings.audit_seal_interval_s
            except Exception as exc:  # retriable: the database may be restarting
                log.warning("sealer.pass_failed", error=safe_error(exc), retry_in_s=backoff)
                delay, backoff = backoff, min(backoff * 2, settings.retry_backoff_max_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        # A last pass with a checkpoint, so a clean stop leaves the head signed.
        await seal_once(engine, settings, force_checkpoint=True)
    finally:
        await engine.dispose()
        log.info("sealer.stopped")
