"""Logs are JSON with bound context, and no identifier, name or date of birth reaches them."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.conftest import RunningWorker
from tests.e2e.test_publish_to_alert import HEADERS, count, publish, token, wait_for
from tests.factories import TEST_ACTOR, ed_attendance, moved_in, person, register_orgs, years_before

from lookout.logging import configure_logging
from lookout.orgs import service
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    yield stream
    configure_logging("INFO", json=False)
    logging.getLogger().setLevel(logging.WARNING)


async def test_no_personal_data_reaches_the_logs(
    captured: io.StringIO,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    worker: RunningWorker,
    api_url: str,
) -> None:
    from datetime import UTC, datetime

    from lookout.alerts.models import Alert
    from lookout.ingest.models import Rejection

    await register_orgs(sessions)
    async with sessions() as session, session.begin():
        client = await service.create_client(session, TEST_ACTOR, "hackney-cs")
    now = datetime.now(UTC)
    mother = person(
        years_before(now, 31), given_name="Zelophehad", family_name="Quixotica", postcode="E8 1DY"
    )
    child = person(years_before(now, 6), given_name="Thaddeus", family_name="Quixotica")
    bad = ed_attendance(person(years_before(now, 40), given_name="Ignatius"), at=now)
    bad["data"]["patient"]["nhs_number"] = "9434765918"  # fails the check digit
    since = years_before(now, 1)
    await publish(
        settings,
        [
            moved_in(mother, since, at=now),
            moved_in(child, since, at=now),
            ed_attendance(mother, at=now),
            bad,
        ],
    )
    await wait_for(lambda: count(sessions, Alert))
    await wait_for(lambda: count(sessions, Rejection))
    async with httpx.AsyncClient(base_url=api_url) as http:
        auth = {"Authorization": f"Bearer {await token(http, *client)}", **HEADERS}
        [item] = (await http.get("/v1/alerts", headers=auth)).json()["items"]
        await http.get(f"/v1/alerts/{item['id']}", headers=auth)

    logs = captured.getvalue()
    lines = [orjson.loads(line) for line in logs.splitlines() if line.strip()]
    committed = [line for line in lines if line.get("event") == "batch committed"]
    assert committed
    assert all("offsets" in line and line["seconds"] > 0 for line in committed)
    secrets = [
        mother["nhs_number"],
        child["nhs_number"],
        "9434765918",
        "Zelophehad",
        "Quixotica",
        "Thaddeus",
        "Ignatius",
        "E8 1DY",
        mother["birth_date"],
        child["birth_date"],
    ]
    leaked = [s for s in secrets if s in logs]
    assert leaked == []
