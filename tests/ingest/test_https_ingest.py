"""HTTPS ingest (the CloudEvents HTTP binding) and the rejections publishers and operators
see, with replay."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.e2e.test_publish_to_alert import topic_messages
from tests.factories import (
    COUNCIL,
    HOSPITAL,
    client_token,
    ed_attendance,
    person,
    register_every_kind,
    serve,
)

from lookout.api.app import create_app
from lookout.audit.models import AuditRecord
from lookout.embedded.broker import EmbeddedBroker
from lookout.ingest import repository as ingest
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


async def events_topic(settings: Settings) -> list[tuple[bytes | None, bytes | None]]:
    return [(m.key, m.value) for m in await topic_messages(settings, settings.events_topic)]


async def test_events_over_https_are_validated_per_event_and_published_keyed_by_subject(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    settings.ingest_max_batch_events = 3
    await register_every_kind(sessions)
    good = ed_attendance(person())
    foreign = ed_attendance(person())
    foreign["source"] = COUNCIL
    bad = ed_attendance(person())
    bad["data"]["presenting_reasons"] = ["not-a-reason"]
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = await client_token(http, sessions, "test-hospital")
        single = await http.post(
            "/v1/events", headers={**own, **STRUCTURED}, content=orjson.dumps(good)
        )
        assert single.status_code == 200, single.text
        assert single.json()["results"] == [
            {"index": 0, "id": good["id"], "status": "accepted", "reason": None, "detail": None}
        ]
        batch = await http.post(
            "/v1/events", headers={**own, **BATCH}, content=orjson.dumps([foreign, bad])
        )
        assert batch.status_code == 200
        body = batch.json()
        assert (body["accepted"], body["rejected"]) == (0, 2)
        assert [r["reason"] for r in body["results"]] == ["unknown_source", "schema_violation"]

        too_many = await http.post(
            "/v1/events", headers={**own, **BATCH}, content=orjson.dumps([good] * 4)
        )
        assert too_many.status_code == 413
        settings.ingest_max_request_bytes = len(orjson.dumps(good)) * 2
        too_big = await http.post(
            "/v1/events", headers={**own, **BATCH}, content=orjson.dumps([good] * 3)
        )
        assert too_big.status_code == 413
        wrong_type = await http.post(
            "/v1/events",
            headers={**own, "Content-Type": "application/json"},
            content=orjson.dumps(good),
        )
        assert wrong_type.status_code == 415
        not_json = await http.post("/v1/events", headers={**own, **STRUCTURED}, content=b"{")
        assert not_json.status_code == 400
    messages = await events_topic(settings)
    assert messages == [(good["subject"].encode(), orjson.dumps(good))]
    async with sessions() as session:
        actions = list(
            (
                await session.execute(
                    select(AuditRecord.end_user).where(AuditRecord.action == "api:event:published")
                )
            ).scalars()
        )
    assert actions == ["sw-42", "sw-42"]


async def test_events_over_https_while_the_broker_is_down_get_503_with_retry_after(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Nothing claimed accepted that the broker did not take; the publisher is told to send
    the same request again (a repeat is a duplicate, processed once)."""
    await register_every_kind(sessions)
    with EmbeddedBroker.start(tmp_path / "broker.log") as broker:
        own_broker = settings.model_copy(
            update={"kafka_bootstrap_servers": broker.bootstrap_servers, "api_broker_timeout_s": 2}
        )
        async with (
            serve(create_app(own_broker)) as url,
            httpx.AsyncClient(base_url=url, timeout=120) as http,
        ):
            own = await client_token(http, sessions, "test-hospital")
            taken = await http.post(
                "/v1/events",
                headers={**own, **STRUCTURED},
                content=orjson.dumps(ed_attendance(person())),
            )
            broker.stop()
            refused = await http.post(
                "/v1/events",
                headers={**own, **STRUCTURED},
                content=orjson.dumps(ed_attendance(person())),
            )
    assert taken.status_code == 200, taken.text
    assert taken.json()["accepted"] == 1
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "5"
    assert refused.json()["title"] == "Service unavailable"


async def test_agencies_see_their_own_rejections_and_operators_replay_them(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_every_kind(sessions)
    ids = {}
    async with sessions() as session, session.begin():
        for source in (HOSPITAL, COUNCIL):
            ids[source] = uuid.uuid4()
            await ingest.insert_rejections(
                session,
                [
                    {
                        "id": ids[source],
                        "reason": "schema_violation",
                        "detail": "data.presenting_reasons.0: not allowed",
                        "source": source,
                        "event_id": "e-1",
                        "event_type": "uk.lookout.health.ed_attendance.v1",
                        "raw": b'{"original": "bytes"}',
                        "kafka_key": b"ref-1",
                        "kafka_topic": settings.events_topic,
                        "kafka_partition": 0,
                        "kafka_offset": 7,
                    }
                ],
            )
    async with httpx.AsyncClient(base_url=api_url) as http:
        hospital = await client_token(http, sessions, "test-hospital")
        seen = (await http.get("/v1/rejections", headers=hospital)).json()["items"]
        assert [(r["id"], r["reason"]) for r in seen] == [(str(ids[HOSPITAL]), "schema_violation")]
        replay = f"/v1/rejections/{ids[HOSPITAL]}/replay"
        assert (await http.post(replay, headers=hospital)).status_code == 403
        operator = await client_token(http, sessions, "test-operator")
        everything = (await http.get("/v1/rejections", headers=operator)).json()["items"]
        assert {r["id"] for r in everything} == {str(i) for i in ids.values()}
        replayed = await http.post(replay, headers=operator)
        assert replayed.status_code == 200, replayed.text
        missing = await http.post(f"/v1/rejections/{uuid.uuid4()}/replay", headers=operator)
        assert missing.status_code == 404
    assert await events_topic(settings) == [(b"ref-1", b'{"original": "bytes"}')]
    async with sessions() as session:
        replays = list(
            (
                await session.execute(
                    select(AuditRecord.object_id).where(
                        AuditRecord.action == "operator:rejection:replayed"
                    )
                )
            ).scalars()
        )
    assert replays == [str(ids[HOSPITAL])]
