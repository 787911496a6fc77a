"""The operator's and publisher's CLI, run as a real process against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import ed_attendance, person

from lookout.orgs.models import Client
from lookout.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.asyncio


def lookout(
    settings: Settings, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LOOKOUT_DATABASE_URL": settings.database_url,
        "LOOKOUT_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "LOOKOUT_EVENTS_TOPIC": settings.events_topic,
        "LOOKOUT_DLQ_TOPIC": settings.dlq_topic,
        "LOOKOUT_CONSUMER_GROUP": settings.consumer_group,
    }
    return subprocess.run(
        [sys.executable, "-m", "lookout", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_register_organisations_and_a_client(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    created = lookout(
        settings,
        "orgs",
        "create",
        "hackney-cs",
        "--name",
        "Hackney",
        "--kind",
        "children_services",
        "--la",
        "E09000012",
    )
    assert created.returncode == 0, created.stderr
    again = lookout(
        settings,
        "orgs",
        "create",
        "hackney-cs",
        "--name",
        "Hackney",
        "--kind",
        "children_services",
        "--la",
        "E09000012",
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr
    missing_la = lookout(
        settings, "orgs", "create", "x-cs", "--name", "X", "--kind", "children_services"
    )
    assert missing_la.returncode == 1
    assert "--la" in missing_la.stderr

    client = lookout(settings, "clients", "create", "--org", "hackney-cs", "--json")
    assert client.returncode == 0, client.stderr
    printed = json.loads(client.stdout)
    async with sessions() as session:
        stored = (await session.execute(select(Client))).scalar_one()
    assert stored.id == printed["client_id"]
    assert printed["client_secret"] not in stored.secret_hash
    assert stored.secret_hash.startswith("$argon2id$")
    listed = lookout(settings, "orgs", "list")
    assert "hackney-cs\tchildren_services\tE09000012" in listed.stdout


async def test_publish_validates_first_and_keys_by_subject(
    settings: Settings, tmp_path: Path
) -> None:
    event = ed_attendance(person())
    bad = {**event, "type": "uk.lookout.health.teleport.v1"}
    refused = lookout(settings, "publish", "-", stdin=orjson.dumps(bad).decode())
    assert refused.returncode == 1
    assert "unknown_type" in refused.stderr

    ndjson = tmp_path / "events.ndjson"
    ndjson.write_bytes(orjson.dumps(event) + b"\n")
    published = lookout(settings, "publish", str(ndjson))
    assert published.returncode == 0, published.stderr
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    [message] = [m for batch in batches.values() for m in batch]
    assert message.key == event["subject"].encode()
    assert orjson.loads(message.value) == event


async def test_every_schema_example_passes_the_publish_check(settings: Settings) -> None:
    examples = sorted((PROJECT_ROOT / "schemas" / "examples").glob("*.json"))
    documents = [orjson.loads(p.read_bytes()) for p in examples]
    stdin = "\n".join(orjson.dumps(d).decode() for d in documents)
    result = lookout(settings, "publish", "-", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert f"published {len(examples)} event(s)" in result.stdout


async def test_rotating_a_client_secret_prints_a_new_one_and_the_old_stops_working(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from datetime import timedelta

    from tests.factories import TEST_ACTOR, register_orgs

    from lookout.errors import NotAuthenticated
    from lookout.orgs import service

    await register_orgs(sessions)
    async with sessions() as session, session.begin():
        client_id, old = await service.create_client(session, TEST_ACTOR, "hackney-cs")
    rotated = lookout(settings, "clients", "rotate", client_id, "--json")
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)["client_secret"]
    assert new != old

    async def token(secret: str) -> str:
        async with sessions() as session, session.begin():
            return await service.issue_token(
                session, TEST_ACTOR, client_id, secret, "k" * 32, timedelta(minutes=1)
            )

    assert await token(new)
    with pytest.raises(NotAuthenticated):
        await token(old)
    unknown = lookout(settings, "clients", "rotate", "no-such-client")
    assert unknown.returncode == 1
    assert "no active client" in unknown.stderr
