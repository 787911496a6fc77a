"""``lookout dlq list`` and ``lookout dlq replay``: an operator sees a rejected event, fixes
the cause (registers the agency), replays it, and the worker accepts it; both audited."""

from __future__ import annotations

import uuid

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.cli.test_cli import lookout
from tests.conftest import RunningWorker
from tests.e2e.test_publish_to_alert import count, publish, wait_for
from tests.factories import TEST_ACTOR, ed_attendance, person, register_orgs

from lookout.audit.models import AuditRecord
from lookout.ingest.models import Event, Rejection
from lookout.orgs import service
from lookout.orgs.models import OrgKind
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio
LATE = "urn:lookout:agency:late-joiner"


async def test_list_then_replay_after_the_source_is_registered(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], worker: RunningWorker
) -> None:
    await register_orgs(sessions)
    event = ed_attendance(person())
    event["source"] = LATE
    await publish(settings, [event, b"not json at all"])
    await wait_for(lambda: count(sessions, Rejection))
    await wait_for(lambda: count(sessions, Rejection, Rejection.reason == "not_json"))

    listed = lookout(settings, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert {r["reason"] for r in rows} == {"unknown_source", "not_json"}
    unknown = next(r for r in rows if r["reason"] == "unknown_source")
    assert (unknown["source"], unknown["event_id"]) == (LATE, event["id"])
    assert event["data"]["patient"]["nhs_number"] not in listed.stdout  # no payloads shown
    only = lookout(settings, "dlq", "list", "--code", "not_json")
    assert only.returncode == 0, only.stderr
    assert "not_json" in only.stdout
    assert "unknown_source" not in only.stdout
    assert lookout(settings, "dlq", "list", "--code", "nonsense").returncode == 2

    # Who and why are required; an unknown id is an error, not a silent no-op.
    assert lookout(settings, "dlq", "replay", unknown["id"]).returncode == 2
    missing = lookout(settings, "dlq", "replay", str(uuid.uuid4()), "--by", "a", "--reason", "b")
    assert missing.returncode == 1
    assert "no such rejection" in missing.stderr

    async with sessions() as session, session.begin():
        await service.create_org(
            session, TEST_ACTOR, org_id="late-joiner", name="Late", kind=OrgKind.agency, source=LATE
        )
    replayed = lookout(
        settings,
        "dlq",
        "replay",
        "--code",
        "unknown_source",
        "--by",
        "on-call",
        "--reason",
        "agency registered",
    )
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {unknown['id']}" in replayed.stdout
    assert "1 rejection(s) replayed" in replayed.stdout
    await wait_for(lambda: count(sessions, Event, Event.event_id == event["id"]))

    async with sessions() as session:
        audit = (
            await session.execute(
                select(AuditRecord).where(
                    AuditRecord.action.in_(["operator:rejection:replayed", "api:rejection:listed"])
                )
            )
        ).scalars()
        by_action: dict[str, list[AuditRecord]] = {}
        for record in audit:
            by_action.setdefault(record.action, []).append(record)
    [replay] = by_action["operator:rejection:replayed"]
    assert (replay.object_id, replay.end_user) == (unknown["id"], "on-call")
    assert replay.details["why"] == "agency registered"
    assert replay.actor_client_id == "lookout-cli"
    assert len(by_action["api:rejection:listed"]) >= 3  # two lists and the replay's selection
