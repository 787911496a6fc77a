"""Hostile input never crashes Lookout: hypothesis throws malformed payloads (random bytes,
invalid UTF-8, not JSON, huge, deeply nested, wrong types, injection strings, NUL
characters, lone surrogates) at the worker through the real broker, and at HTTPS ingest.

The worker must record each message exactly once, as an event or as a rejection with a
reason code, and keep running; HTTPS ingest answers 200 with a reason per rejected event
or a 4xx problem with a detail, never a 500."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.conftest import RunningWorker
from tests.e2e.test_publish_to_alert import caught_up, wait_for
from tests.factories import (
    HOSPITAL,
    client_token,
    ed_attendance,
    person,
    register_every_kind,
    register_orgs,
)

from lookout import kafka
from lookout.ingest.models import Event, Rejection
from lookout.ingest.validation import Reason
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio
MAX_EVENT_BYTES = 8 * 1024
REASONS = {r.value for r in Reason}
_unique = itertools.count(1)

INJECTIONS = [
    "'; DROP TABLE events; --",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    "${jndi:ldap://example.invalid/a}",
    "../../../../etc/passwd",
    "%s%s%s%n",
    "\x00",
    "nul\x00inside",
    "\u202egnp.exe",
    "\ufeff",
    "{{7*7}}",
    "A" * 3000,
]
strings = st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=40))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=15,
)
TYPES = [
    "uk.lookout.health.ed_attendance.v1",
    "uk.lookout.person.residence.v1",
    "uk.lookout.event.retraction.v1",
    "uk.lookout.police.domestic_abuse_incident.v1",
    "uk.lookout.nothing.v1",
]


def _now() -> str:
    return datetime.now(UTC).isoformat()


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Event-shaped documents: each attribute plausible, hostile or of the wrong type."""
    patient = {
        "nhs_number": draw(st.sampled_from(["9434765919", "9434765918", "x", ""])),
        "given_name": draw(strings),
        "birth_date": draw(st.sampled_from(["1990-01-01", "1990-02-30", "yesterday"])),
    }
    plausible: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{draw(strings)}-{next(_unique)}",
        "source": HOSPITAL,
        "type": draw(st.sampled_from(TYPES)),
        "time": _now(),
        "subject": draw(strings),
        "data": {
            "patient": patient,
            "site_ods_code": draw(strings),
            "presenting_reasons": draw(st.lists(strings | st.just("alcohol"), max_size=3)),
            "notes": draw(json_values),
        },
    }
    for name in draw(st.sets(st.sampled_from(sorted(plausible)), max_size=3)):
        if draw(st.booleans()):
            plausible.pop(name)
        else:
            plausible[name] = draw(json_values)
    return plausible


payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(orjson.dumps),
    events().map(orjson.dumps),
    # invalid UTF-8 inside an otherwise well-formed event
    events().map(lambda e: orjson.dumps(e)[:-1] + b', "z": "\xff\xfe\xc3"}'),
    # a lone surrogate escape, and NUL escapes PostgreSQL text and jsonb cannot hold
    st.sampled_from(
        [
            b'{"specversion": "1.0", "id": "\\ud800", "source": "x"}',
            b'{"specversion": "1.0", "id": "a\\u0000b", "source": "' + HOSPITAL.encode() + b'"}',
        ]
    ),
    st.integers(50, 3000).map(lambda n: b"[" * n + b"]" * n),  # deeply nested
    # ... and deeply nested inside an otherwise valid event (an extension attribute)
    st.integers(200, 1100).map(
        lambda n: (
            orjson.dumps(ed_attendance(person()))[:-1] + b', "ext": ' + b"[" * n + b"]" * n + b"}"
        )
    ),
    st.integers(1, 3).map(lambda k: b'{"pad": "' + b"a" * (MAX_EVENT_BYTES + k) + b'"}'),  # huge
)


@pytest.fixture
def hostile_settings(settings: Settings) -> Settings:
    # The app reads its settings per request, so the HTTP test's app sees these limits too.
    settings.max_event_bytes = MAX_EVENT_BYTES
    settings.ingest_max_request_bytes = 64 * 1024
    return settings


@pytest.fixture
async def fuzz_worker(
    hostile_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[RunningWorker]:
    """One worker for all of a test's examples (fixtures outlive hypothesis examples)."""
    await register_orgs(sessions)
    running = RunningWorker(hostile_settings)
    await running.start()
    yield running
    await running.stop()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=st.lists(payloads, min_size=1, max_size=6))
async def test_the_worker_records_every_hostile_message_and_keeps_running(
    hostile_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fuzz_worker: RunningWorker,
    messages: list[bytes],
) -> None:
    settings = hostile_settings
    producer = AIOKafkaProducer(
        **kafka.producer_config(settings.kafka_bootstrap_servers), max_request_size=1 << 20
    )
    await producer.start()
    try:
        positions = [
            await producer.send_and_wait(settings.events_topic, m, key=b"fuzz") for m in messages
        ]
    finally:
        await producer.stop()
    published = _published[settings.events_topic] = _published.get(settings.events_topic, 0) + len(
        messages
    )
    try:
        await wait_for(lambda: caught_up(sessions, settings, published), within_s=30)
    finally:
        assert fuzz_worker.task is not None
        if fuzz_worker.task.done():
            fuzz_worker.task.result()  # raises the worker's exception, if it crashed
    async with sessions() as session:
        for meta in positions:
            rejected = (
                await session.execute(
                    select(Rejection.reason, Rejection.detail).where(
                        Rejection.kafka_partition == meta.partition,
                        Rejection.kafka_offset == meta.offset,
                    )
                )
            ).all()
            stored = (
                await session.execute(
                    select(Event.id).where(
                        Event.kafka_partition == meta.partition,
                        Event.kafka_offset == meta.offset,
                    )
                )
            ).all()
            assert len(rejected) + len(stored) == 1, (meta, rejected, stored)
            for reason, detail in rejected:
                assert reason in REASONS
                assert detail


_published: dict[str, int] = {}  # messages on each test's topic so far, over its examples
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


@pytest.fixture
async def publisher_headers(
    hostile_settings: Settings, sessions: async_sessionmaker[AsyncSession], api_url: str
) -> dict[str, str]:
    await register_every_kind(sessions)
    async with httpx.AsyncClient(base_url=api_url) as http:
        return await client_token(http, sessions, "test-hospital")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.one_of(
        payloads,
        st.lists(events(), max_size=4).map(orjson.dumps),
        st.integers(1, 2).map(lambda k: b"[" + b'"a",' * (20_000 * k) + b'"a"]'),  # over 64 KiB
    ),
    media=st.sampled_from([STRUCTURED, BATCH, "application/json", "text/plain; charset=utf-8"]),
)
async def test_https_ingest_answers_hostile_bodies_with_a_reason_never_a_500(
    api_url: str, publisher_headers: dict[str, str], body: bytes, media: str
) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        answer = await http.post(
            "/v1/events", content=body, headers={**publisher_headers, "Content-Type": media}
        )
    assert answer.status_code in (200, 400, 413, 415, 422), (answer.status_code, answer.text)
    document = answer.json()
    if answer.status_code != 200:
        assert document["detail"]
        return
    assert document["accepted"] + document["rejected"] == len(document["results"])
    for result in document["results"]:
        if result["status"] == "rejected":
            assert result["reason"] in REASONS
            assert result["detail"]


async def test_hostile_strategies_cover_the_hard_cases() -> None:
    """The strategies above do reach what they claim to (a guard against a silent typo)."""
    nested = b"[" * 3000 + b"]" * 3000
    huge = b'{"pad": "' + b"a" * (MAX_EVENT_BYTES + 1) + b'"}'
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(nested)
    assert len(huge) > MAX_EVENT_BYTES
    assert any("\x00" in s for s in INJECTIONS)
