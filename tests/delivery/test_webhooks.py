"""Webhooks end to end: a real receiver on 127.0.0.1 that verifies Standard Webhooks
signatures with the ``standardwebhooks`` library, down for a while, then up."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.factories import client_token, raise_alerts, register_orgs

from lookout.alerts.models import Alert
from lookout.audit.models import AuditRecord
from lookout.delivery.dispatcher import Dispatcher
from lookout.delivery.models import AlertEvent, Subscription
from lookout.delivery.service import refused_target
from lookout.embedded.postgres import free_port
from lookout.orgs.models import Organisation
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


class Receiver:
    """A subscriber's endpoint: answers ``status`` and keeps every verified message."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.status = 200
        self.secret = ""
        self.received: dict[str, dict[str, Any]] = {}  # webhook-id -> payload
        self.calls = 0
        self.bad_signatures = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def hook(self, request: Request) -> Response:
        self.calls += 1
        body = await request.body()
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return Response(status_code=400)
        if self.status == 200:
            self.received[request.headers["webhook-id"]] = payload
        return Response(status_code=self.status)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._server and self._task:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 10)


@contextlib.asynccontextmanager
async def dispatching(settings: Settings) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(settings)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.stopping.set()
        await asyncio.wait_for(task, 30)


async def until(predicate: Any, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def attempts(http: httpx.AsyncClient, headers: dict[str, str], sub: str) -> list[Any]:
    answer = await http.get(f"/v1/subscriptions/{sub}/deliveries", headers=headers)
    assert answer.status_code == 200
    items: list[Any] = answer.json()["items"]
    return items


async def test_every_alert_arrives_signed_after_the_receiver_was_down(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions)
    receiver = Receiver(free_port())
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = await client_token(http, sessions, "hackney-cs")
        created = await http.post("/v1/subscriptions", headers=own, json={"url": receiver.url})
        assert created.status_code == 201, created.text
        receiver.secret = created.json()["secret"]
        assert receiver.secret.startswith("whsec_")
        sub = created.json()["id"]
        listed = (await http.get("/v1/subscriptions", headers=own)).json()["items"]
        assert [s["id"] for s in listed] == [sub]
        assert "secret" not in listed[0]

        await raise_alerts(sessions, 3)
        async with dispatching(settings):
            # Down: the connection is refused; the dispatcher records it and retries.
            await until(lambda: _has(http, own, sub, "retry"))
            # Up but failing (503) for a while, then healthy.
            receiver.status = 503
            await receiver.start()
            try:
                await until(_called(receiver))
                receiver.status = 200
                await raise_alerts(sessions, 2)
                items = (await http.get("/v1/alerts", headers=own)).json()["items"]
                ack = await http.post(f"/v1/alerts/{items[0]['id']}/acknowledge", headers=own)
                assert ack.status_code == 200
                await until(lambda: _count(receiver, 6))
            finally:
                await receiver.stop()
        log = await attempts(http, own, sub)

    payloads = list(receiver.received.values())
    assert receiver.bad_signatures == 0
    assert sorted(p["data"]["sequence"] for p in payloads) == [1, 2, 3, 4, 5, 6]
    assert sorted(p["type"] for p in payloads) == ["alert.created"] * 5 + ["alert.updated"]
    async with sessions() as session:
        alerts = {str(a) for a in (await session.execute(select(Alert.id))).scalars()}
    assert {p["data"]["alert_id"] for p in payloads} == alerts
    assert set(payloads[0]["data"]) == {"alert_id", "alert_sequence", "sequence"}  # thin
    outcomes = {a["outcome"] for a in log}
    assert {"retry", "delivered"} <= outcomes
    assert any(a["status_code"] == 503 for a in log)
    # Retries keep the webhook-id, so the receiver can deduplicate.
    delivered = [a for a in log if a["outcome"] == "delivered"]
    assert len({a["message_id"] for a in delivered}) == 6
    async with sessions() as session:
        audited = (
            await session.execute(
                select(AuditRecord.object_id).where(
                    AuditRecord.action == "dispatcher:webhook:delivered"
                )
            )
        ).scalars()
        assert set(audited) == {str(a["message_id"]) for a in delivered}  # each delivery audited


async def _has(http: httpx.AsyncClient, headers: dict[str, str], sub: str, outcome: str) -> bool:
    return any(a["outcome"] == outcome for a in await attempts(http, headers, sub))


def _called(receiver: Receiver) -> Any:
    async def check() -> bool:
        return receiver.calls > 0

    return check


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.received) >= n


async def test_a_410_or_exhausted_retries_disable_the_subscription(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions)
    settings.webhook_retry_schedule_s = [0.05, 0.05]
    gone, failing = Receiver(free_port()), Receiver(free_port())
    gone.status, failing.status = 410, 500
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = await client_token(http, sessions, "hackney-cs")
        subs = {}
        for receiver in (gone, failing):
            answer = await http.post("/v1/subscriptions", headers=own, json={"url": receiver.url})
            receiver.secret = answer.json()["secret"]
            subs[answer.json()["id"]] = receiver
            await receiver.start()
        try:
            await raise_alerts(sessions, 1)
            async with dispatching(settings):

                async def both_disabled() -> bool:
                    items = (await http.get("/v1/subscriptions", headers=own)).json()["items"]
                    return all(i["disabled_at"] for i in items)

                await until(both_disabled)
        finally:
            for receiver in (gone, failing):
                await receiver.stop()
        reasons = {
            subs[i["id"]].status: i["disabled_reason"]
            for i in (await http.get("/v1/subscriptions", headers=own)).json()["items"]
        }
    assert reasons == {410: "gone", 500: "exhausted"}
    assert failing.calls == 3  # the first attempt and two retries
    assert gone.calls == 1


async def test_private_and_loopback_targets_are_refused_unless_allowed() -> None:
    for url in (
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest",
        "http://localhost/hook",
        "ftp://example.org/hook",
        "http://user:pw@93.184.216.34/hook",
    ):
        assert await refused_target(url, allow_private=False) is not None, url
    assert await refused_target("https://93.184.216.34/hook", allow_private=False) is None
    assert await refused_target("http://127.0.0.1/hook", allow_private=True) is None


async def test_urgent_alerts_not_acknowledged_in_time_are_escalated_once(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 2)
    async with sessions() as session, session.begin():
        await session.execute(update(Alert).values(severity="urgent"))
        await session.execute(
            update(Organisation).where(Organisation.id == "hackney-cs").values(escalate_after_s=0)
        )
        acked = (await session.execute(select(Alert).limit(1))).scalar_one()
        acked.status = "acknowledged"
    dispatcher = Dispatcher(settings)
    async with httpx.AsyncClient() as http:
        await dispatcher.tick(sessions, http)
        await dispatcher.tick(sessions, http)  # a second tick changes nothing
    async with sessions() as session:
        alerts = list((await session.execute(select(Alert))).scalars())
        events = list(
            (
                await session.execute(
                    select(AlertEvent).where(AlertEvent.type == "alert.escalated")
                )
            ).scalars()
        )
        audited = list(
            (
                await session.execute(
                    select(AuditRecord.object_id).where(
                        AuditRecord.action == "dispatcher:alert:escalated"
                    )
                )
            ).scalars()
        )
        subscriptions = (await session.execute(select(Subscription))).scalars().all()
    [escalated] = [a for a in alerts if a.escalated_at is not None]
    assert escalated.id != acked.id
    assert [e.alert_id for e in events] == [escalated.id]
    assert events[0].sequence == 3  # after the two alert.created events
    assert audited == [str(escalated.id)]
    assert subscriptions == []
    assert orjson.dumps(events[0].details) == b'{"change":"escalated"}'
