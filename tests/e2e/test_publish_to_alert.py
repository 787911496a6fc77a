"""End to end: publish to the real broker, the worker commits, the API serves the alert."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.conftest import RunningWorker
from tests.factories import TEST_ACTOR, ed_attendance, moved_in, person, register_orgs, years_before

from lookout import kafka
from lookout.alerts.models import Alert
from lookout.audit.models import AuditRecord
from lookout.ingest.models import ConsumerOffset, Event, Rejection
from lookout.orgs import service
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio
OLD_CLUSTER = "an-older-cluster"
HEADERS = {"X-Lookout-End-User": "sw-42", "X-Lookout-Purpose": "safeguarding_triage"}


async def publish(settings: Settings, events: Sequence[dict[str, Any] | bytes]) -> None:
    producer = AIOKafkaProducer(**kafka.producer_config(settings.kafka_bootstrap_servers))
    await producer.start()
    try:
        for e in events:
            raw = e if isinstance(e, bytes) else orjson.dumps(e)
            key = e["subject"].encode() if isinstance(e, dict) else b"junk"
            await producer.send_and_wait(settings.events_topic, raw, key=key)
    finally:
        await producer.stop()


async def topic_messages(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """The messages on ``topic`` (read from its start: what the first fetch returns, within 5 s)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    return [m for batch in batches.values() for m in batch]


async def wait_for(predicate: Any, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def count(sessions: async_sessionmaker[AsyncSession], model: Any, *where: Any) -> int:
    async with sessions() as session:
        return int(
            (
                await session.execute(select(func.count()).select_from(model).where(*where))
            ).scalar_one()
        )


async def caught_up(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, total: int
) -> bool:
    """The stored offsets, all on the current broker log, add up to ``total`` messages."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(ConsumerOffset.cluster_id, ConsumerOffset.next_offset).where(
                    ConsumerOffset.group_id == settings.consumer_group,
                    ConsumerOffset.topic == settings.events_topic,
                )
            )
        ).all()
    return (
        all(r.cluster_id != OLD_CLUSTER for r in rows) and sum(r.next_offset for r in rows) == total
    )


def nlgn_scenario() -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    mother, child1, child2 = (
        person(years_before(now, 34)),
        person(years_before(now, 7)),
        person(years_before(now, 4)),
    )
    since = years_before(now, 1)
    return [
        moved_in(mother, since, at=now - timedelta(days=300)),
        moved_in(child1, since, at=now - timedelta(days=300)),
        moved_in(child2, since, at=now - timedelta(days=300)),
        ed_attendance(mother, at=now - timedelta(minutes=10)),
    ]


async def token(http: httpx.AsyncClient, client_id: str, secret: str) -> str:
    answer = await http.post(
        "/v1/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    return str(body["access_token"])


async def test_published_event_becomes_an_alert_only_its_recipient_can_read(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    worker: RunningWorker,
    api_url: str,
) -> None:
    await register_orgs(sessions)
    async with sessions() as session, session.begin():
        hackney = await service.create_client(session, TEST_ACTOR, "hackney-cs")
        barking = await service.create_client(session, TEST_ACTOR, "barking-cs")
    await publish(settings, nlgn_scenario())
    await wait_for(lambda: count(sessions, Alert))

    async with httpx.AsyncClient(base_url=api_url) as http:
        own = {"Authorization": f"Bearer {await token(http, *hackney)}", **HEADERS}
        page = (await http.get("/v1/alerts", headers=own)).json()
        [item] = page["items"]
        assert page["next_cursor"] is None
        assert item["rule_id"] == "adult-substance-misuse-ed"
        assert len(item["children"]) == 2
        detail = await http.get(f"/v1/alerts/{item['id']}", headers=own)
        assert detail.status_code == 200
        assert [c["id"] for c in detail.json()["explanation"]["conditions"]] == [
            "trigger",
            "child_in_household",
        ]

        other = {"Authorization": f"Bearer {await token(http, *barking)}", **HEADERS}
        assert (await http.get("/v1/alerts", headers=other)).json()["items"] == []
        assert (await http.get(f"/v1/alerts/{item['id']}", headers=other)).status_code == 404

        assert (await http.get("/v1/alerts", headers=HEADERS)).status_code == 401
        bad = {"Authorization": "Bearer not-a-token", **HEADERS}
        assert (await http.get("/v1/alerts", headers=bad)).status_code == 401
        wrong = await http.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": hackney[0],
                "client_secret": "wrong",
            },
        )
        assert wrong.status_code == 401
        no_purpose = await http.get("/v1/alerts", headers={"Authorization": own["Authorization"]})
        assert no_purpose.status_code == 400
        assert "X-Lookout-Purpose" in no_purpose.json()["detail"]
        assert (await http.get("/v1/alerts?cursor=%%%", headers=own)).status_code == 400
        assert (await http.get("/docs")).status_code == 200
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200
        assert "lookout_api_requests_total" in (await http.get("/metrics")).text

    async with sessions() as session:
        actions = set((await session.execute(select(AuditRecord.action))).scalars())
    assert {
        "worker:event:accepted",
        "worker:alert:raised",
        "api:alert:listed",
        "api:alert:read",
        "api:token:issued",
        "api:token:denied",
        "api:request:denied",
    } <= actions


async def test_invalid_event_goes_to_the_dlq_and_the_next_one_is_processed(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], worker: RunningWorker
) -> None:
    await register_orgs(sessions)
    valid = nlgn_scenario()[0]
    await publish(settings, [b"{not json", valid])
    await wait_for(lambda: count(sessions, Event))
    assert await count(sessions, Rejection, Rejection.reason == "not_json") == 1
    await wait_for(lambda: count(sessions, Rejection, Rejection.dlq_published_at.is_not(None)))

    [message] = await topic_messages(settings, settings.dlq_topic)
    headers = dict(message.headers)
    assert message.value == b"{not json"
    assert headers["reason"] == b"not_json"
    async with sessions() as session:
        rejection = (await session.execute(select(Rejection))).scalar_one()
    assert headers["rejection-id"].decode() == str(rejection.id)


async def test_replay_from_the_start_and_a_new_broker_log_raise_nothing_new(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], worker: RunningWorker
) -> None:
    await register_orgs(sessions)
    events = nlgn_scenario()
    await publish(settings, [*events, events[-1]])  # the last one twice: a duplicate
    await wait_for(lambda: caught_up(sessions, settings, len(events) + 1))
    assert await count(sessions, Alert) == 1
    assert await count(sessions, Event) == len(events)

    # Pretend the stored offsets belong to another broker cluster (as after a restart of
    # the bundled broker): the worker must read the log from its start and say so.
    await worker.stop()
    async with sessions() as session, session.begin():
        await session.execute(
            update(ConsumerOffset).values(cluster_id=OLD_CLUSTER, next_offset=999)
        )
    await worker.start()
    await wait_for(
        lambda: count(sessions, AuditRecord, AuditRecord.action == "worker:log:new_cluster")
    )
    await wait_for(lambda: caught_up(sessions, settings, len(events) + 1))
    async with sessions() as session:
        stored = (await session.execute(select(func.sum(ConsumerOffset.next_offset)))).scalar_one()
    assert stored == len(events) + 1  # never past the log end
    assert await count(sessions, Alert) == 1
    assert await count(sessions, Event) == len(events)
    assert await count(sessions, AuditRecord, AuditRecord.action == "worker:alert:raised") == 1
