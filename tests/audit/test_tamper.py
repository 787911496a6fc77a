"""The verifier detects any single modified, deleted, inserted or reordered record, and a
forged checkpoint (a property test over a real, sealed trail).

Attacker model: someone with DBA rights. The audit tables refuse UPDATE and DELETE, so
the attacker first switches the triggers off (``SET LOCAL session_replication_role =
replica``, which a superuser may do; ``ALTER TABLE ... DISABLE TRIGGER`` is the same
power), edits the tables, and may even recompute the seals (the canonical form is
public). What the attacker does not hold is the sealer's Ed25519 private key. Each
example tampers inside a transaction, verifies inside it, and rolls back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import TEST_ACTOR, seal, with_state_dir

from lookout.audit import repository, signing
from lookout.audit.actions import Action
from lookout.audit.chain import GENESIS, link
from lookout.audit.service import Actor, Entry, record
from lookout.audit.verify import Report, verify
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio

FIELDS = {
    "action": "'api:alert:listed'",
    "outcome": "'denied'",
    "object_id": "'someone-else'",
    "actor_org_id": "'another-org'",
    "end_user": "'nobody'",
    "purpose": "'curiosity'",
    "request_id": "'r-forged'",
    "details": "details || '{\"x\": 1}'::jsonb",
    "at": "at + interval '1 microsecond'",
}


@dataclass
class Trail:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    seqs: list[int]  # sealed records, ascending
    gaps: list[int]  # seqs inside the range that no record holds
    checkpoints: list[int]


@pytest.fixture
async def trail(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> Trail:
    settings = with_state_dir(settings, tmp_path)
    someone = Actor(org_id="hackney-cs", client_id="c1", end_user="sw-1", purpose="case_work")
    for i in range(16):
        async with sessions() as session, session.begin():
            await record(
                session,
                someone if i % 2 else TEST_ACTOR,
                [Entry(Action.alert_read, "alert", f"alert-{i}", details={"n": i})],
            )
        if i % 5 == 2:  # a failed request: its seq becomes a gap
            async with sessions() as session, session.begin():
                await record(session, TEST_ACTOR, [Entry(Action.alert_read, "alert", "x")])
                await session.rollback()
        if i == 7:
            await seal(settings)  # a checkpoint half way
    await seal(settings)
    async with sessions() as session:
        seqs = [r.seq for r in await repository.rows_in_range(session, 0, 10_000)]
        checkpoints = [c.seq for c in await repository.checkpoints(session)]
    gaps = sorted(set(range(seqs[0], seqs[-1])) - set(seqs))
    assert gaps
    assert len(checkpoints) == 2
    return Trail(settings, sessions, seqs, gaps, checkpoints)


async def _seal_hash(session: AsyncSession, seq: int) -> bytes:
    value = (
        await session.execute(text("SELECT hash FROM audit_seals WHERE seq = :s"), {"s": seq})
    ).scalar_one()
    return bytes(value)


async def _prev_hash(session: AsyncSession, seq: int) -> bytes:
    value = (
        await session.execute(
            text("SELECT hash FROM audit_seals WHERE seq < :s ORDER BY seq DESC LIMIT 1"),
            {"s": seq},
        )
    ).scalar_one_or_none()
    return bytes(value) if value is not None else GENESIS


async def _reseal_from(session: AsyncSession, seq: int) -> None:
    """The attacker recomputes every seal from ``seq`` on: the chain is consistent again."""
    prev = await _prev_hash(session, seq)
    for row in await repository.rows_in_range(session, seq, 10_000):
        prev = link(row, prev)
        await session.execute(
            text("UPDATE audit_seals SET hash = :h WHERE seq = :s"), {"h": prev, "s": row.seq}
        )


Tamper = tuple[str, int, int]
tampering = st.tuples(
    st.sampled_from(
        [
            "modify",
            "delete",
            "delete_with_seal",
            "insert",
            "insert_with_seal",
            "reorder",
            "modify_and_reseal",
            "forge_checkpoint_head",
            "forge_checkpoint_seq",
            "checkpoint_other_key",
            "delete_checkpoint",
        ]
    ),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)


async def _tamper_and_verify(trail: Trail, tamper: Tamper) -> tuple[Report, int | None]:
    """Apply one tampering; return the report and the seq the verifier must name (if
    the tampering determines one)."""
    kind, a, b = tamper
    seqs, gaps = trail.seqs, trail.gaps
    k = seqs[a % len(seqs)]
    field = sorted(FIELDS)[b % len(FIELDS)]
    expected: int | None = None
    async with trail.sessions() as session, session.begin():
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        if kind == "modify":
            await session.execute(
                text(f"UPDATE audit_records SET {field} = {FIELDS[field]} WHERE seq = :k"),
                {"k": k},
            )
            expected = k
        elif kind in ("delete", "delete_with_seal"):
            await session.execute(text("DELETE FROM audit_records WHERE seq = :k"), {"k": k})
            expected = k
            if kind == "delete_with_seal":
                await session.execute(text("DELETE FROM audit_seals WHERE seq = :k"), {"k": k})
                later = [s for s in seqs if s > k]
                expected = later[0] if later else None
        elif kind in ("insert", "insert_with_seal"):
            g = gaps[a % len(gaps)]
            await session.execute(
                text(
                    "INSERT INTO audit_records (seq, at, action, object_type, object_id, "
                    "outcome, details) VALUES (:g, now(), 'api:alert:read', 'alert', 'x', "
                    "'ok', '{}')"
                ),
                {"g": g},
            )
            expected = g
            if kind == "insert_with_seal":
                [row] = await repository.rows_in_range(session, g, g + 1)
                forged = link(row, await _prev_hash(session, g))
                await session.execute(
                    text("INSERT INTO audit_seals (seq, hash) VALUES (:g, :h)"),
                    {"g": g, "h": forged},
                )
                expected = min(s for s in seqs if s > g)
        elif kind == "reorder":
            other = seqs[b % len(seqs)]
            if other == k:
                other = seqs[(seqs.index(k) + 1) % len(seqs)]
            for frm, to in ((k, -1), (other, k), (-1, other)):
                await session.execute(
                    text("UPDATE audit_records SET seq = :to WHERE seq = :frm"),
                    {"frm": frm, "to": to},
                )
            expected = min(k, other)
        elif kind == "modify_and_reseal":
            await session.execute(
                text(f"UPDATE audit_records SET {field} = {FIELDS[field]} WHERE seq = :k"),
                {"k": k},
            )
            await _reseal_from(session, k)
            expected = min(c for c in trail.checkpoints if c >= k)
        elif kind == "forge_checkpoint_head":
            await session.execute(
                text("UPDATE audit_checkpoints SET head_hash = :h WHERE seq = :s"),
                {"h": hashlib.sha256(b"forged").digest(), "s": trail.checkpoints[a % 2]},
            )
        elif kind == "forge_checkpoint_seq":
            await session.execute(
                text("UPDATE audit_checkpoints SET seq = seq - 1 WHERE seq = :s"),
                {"s": trail.checkpoints[a % 2]},
            )
        elif kind == "checkpoint_other_key":
            # A rewritten chain "checkpointed" with the attacker's own key.
            await session.execute(
                text(f"UPDATE audit_records SET {field} = {FIELDS[field]} WHERE seq = :k"),
                {"k": k},
            )
            await _reseal_from(session, k)
            await session.execute(text("DELETE FROM audit_checkpoints"))
            own = Ed25519PrivateKey.generate()
            head = seqs[-1]
            checkpoint = signing.Checkpoint(
                head,
                await _seal_hash(session, head),
                datetime.now(UTC) - timedelta(seconds=1),
                signing.key_id(own.public_key()),
            )
            await repository.add_checkpoint(
                session,
                seq=checkpoint.seq,
                head_hash=checkpoint.head_hash,
                created_at=checkpoint.created_at,
                key_id=checkpoint.key_id,
                signature=signing.sign(own, checkpoint),
            )
        elif kind == "delete_checkpoint":
            # Removing the checkpoints hides a re-sealed chain from the database alone;
            # the checkpoint files kept off the box still catch it.
            await _reseal_from(session, k)
            await session.execute(text("DELETE FROM audit_checkpoints"))
        report = await verify(
            session,
            signing.verify_key(trail.settings),
            signing.checkpoint_dir(trail.settings),
            one_snapshot=False,
        )
        await session.rollback()
    return report, expected


async def test_the_untouched_trail_verifies(trail: Trail) -> None:
    async with trail.sessions() as session:
        report = await verify(
            session, signing.verify_key(trail.settings), signing.checkpoint_dir(trail.settings)
        )
    assert report.ok, report.problem
    assert report.records_checked == len(trail.seqs)
    assert report.unsealed == 0


@hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(tamper=tampering)
async def test_any_single_tampering_is_detected_and_named(trail: Trail, tamper: Tamper) -> None:
    report, expected = await _tamper_and_verify(trail, tamper)
    assert not report.ok, tamper
    assert report.problem
    if expected is not None:
        assert report.first_bad_seq == expected, (tamper, report)
