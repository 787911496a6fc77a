"""The SSE stream: new alerts and changes for the caller's organisation only, resumable
with Last-Event-ID, with heartbeat comment lines."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import OTHER_LA, client_token, raise_alerts, register_orgs

from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


async def read_events(
    http: httpx.AsyncClient, headers: dict[str, str], n: int
) -> tuple[list[dict[str, Any]], int]:
    """The first ``n`` events of the stream (and how many heartbeat comments came)."""
    events: list[dict[str, Any]] = []
    heartbeats = 0
    current: dict[str, Any] = {}
    async with http.stream("GET", "/v1/alerts/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith(":"):
                heartbeats += 1
            elif line.startswith("id:"):
                current["id"] = int(line[3:].strip())
            elif line.startswith("event:"):
                current["event"] = line[6:].strip()
            elif line.startswith("data:"):
                current["data"] = orjson.loads(line[5:].strip())
            elif line == "" and current:
                events.append(current)
                current = {}
                if len(events) == n:
                    break
    return events, heartbeats


async def test_stream_resumes_after_last_event_id_and_shows_only_own_changes(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    settings.stream_heartbeat_s = 0.2
    await register_orgs(sessions)
    await raise_alerts(sessions, 3)
    await raise_alerts(sessions, 2, la_code=OTHER_LA)
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        own = await client_token(http, sessions, "hackney-cs")
        events, _ = await read_events(http, {**own, "Last-Event-ID": "0"}, 3)
        assert [e["id"] for e in events] == [1, 2, 3]
        assert {e["event"] for e in events} == {"alert.created"}
        assert all(e["data"]["sequence"] == e["id"] for e in events)

        # Resume after 2: event 3, then the changes made while the stream is open.
        async def change_later() -> None:
            await asyncio.sleep(0.5)
            await http.post(f"/v1/alerts/{events[0]['data']['alert_id']}/acknowledge", headers=own)
            await raise_alerts(sessions, 1)

        task = asyncio.create_task(change_later())
        resumed, heartbeats = await read_events(http, {**own, "Last-Event-ID": "2"}, 3)
        await task
        assert [(e["id"], e["event"]) for e in resumed] == [
            (3, "alert.created"),
            (4, "alert.updated"),
            (5, "alert.created"),
        ]
        assert heartbeats >= 1

        other = await client_token(http, sessions, "barking-cs")
        theirs, _ = await read_events(http, {**other, "Last-Event-ID": "0"}, 2)
        own_alerts = {e["data"]["alert_id"] for e in events + resumed}
        assert not own_alerts & {e["data"]["alert_id"] for e in theirs}
