"""`lookout identity matches|confirm|reject|unlink` against the test database."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.cli.test_cli import lookout
from tests.factories import (
    NOW,
    Feeder,
    ed_attendance,
    moved_in,
    nhs_number,
    register_orgs,
    years_before,
)

from lookout.audit.models import AuditRecord
from lookout.identity.models import PossibleMatch
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


async def test_review_from_the_command_line(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await register_orgs(sessions)
    known = {"given_name": "Sarah", "family_name": "Turner", "birth_date": "1994-03-12"}
    await Feeder(sessions).feed_each(
        [
            moved_in({"nhs_number": nhs_number(), **known}, years_before(NOW, 1)),
            ed_attendance({**known, "given_name": "Emma"}),
            ed_attendance({**known, "given_name": "Sara", "birth_date": "1994-03-21"}),
        ]
    )
    listed = lookout(settings, "identity", "matches")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "Turner" not in listed.stdout
    first, second = (int(line.split("\t")[0]) for line in lines)
    confirmed = lookout(settings, "identity", "confirm", str(first), "--as", "op-1")
    assert confirmed.returncode == 0, confirmed.stderr
    rejected = lookout(settings, "identity", "reject", str(second), "--as", "op-1")
    assert rejected.returncode == 0, rejected.stderr
    async with sessions() as session:
        survivor = (
            await session.execute(select(PossibleMatch.person_id).where(PossibleMatch.id == first))
        ).scalar_one()
    unlinked = lookout(settings, "identity", "unlink", str(survivor), "--as", "op-1")
    assert unlinked.returncode == 0, unlinked.stderr
    assert "1 event(s) moved back" in unlinked.stdout
    async with sessions() as session:
        users = set(
            (
                await session.execute(
                    select(AuditRecord.action).where(AuditRecord.end_user == "op-1")
                )
            ).scalars()
        )
    assert users == {
        "reviewer:possible_match:confirmed",
        "reviewer:possible_match:rejected",
        "reviewer:person:unlinked",
    }
