"""The API benchmark's own HTTP client (``benchmarks.api_load.Connection``) speaks to the
real API as any client does: keep-alive requests, statuses and bodies as sent."""

from __future__ import annotations

import httpx
import orjson
import pytest
from benchmarks.api_load import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import client_token, raise_alerts, register_orgs

pytestmark = pytest.mark.asyncio


async def test_keep_alive_requests_read_whole_answers(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 3)
    async with httpx.AsyncClient(base_url=api_url) as http:
        headers = await client_token(http, sessions, "hackney-cs")
        expected = (await http.get("/v1/alerts?limit=2", headers=headers)).json()
    connection = Connection(api_url)
    try:
        status, body = await connection.get("/v1/alerts?limit=2", headers)
        assert status == 200
        page = orjson.loads(body)
        assert [i["id"] for i in page["items"]] == [i["id"] for i in expected["items"]]
        writer = connection.writer
        status, body = await connection.get(
            "/v1/alerts?limit=2&cursor=" + page["next_cursor"].replace("=", "%3D"), headers
        )
        assert status == 200
        assert len(orjson.loads(body)["items"]) == 1
        assert connection.writer is writer  # the same connection
        status, body = await connection.get("/v1/alerts", {})
        assert status == 401
        assert orjson.loads(body)["status"] == 401
    finally:
        await connection.close()
