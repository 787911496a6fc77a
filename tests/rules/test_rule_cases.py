"""Every rule test case in rules/tests/ holds twice: in the pure replay engine (what
``lookout rules test`` runs) and in the real pipeline on PostgreSQL — fed in the written
order as one batch, and in reverse order one event per batch (arrival order must not
matter)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import TEST_ACTOR, Feeder

from lookout.alerts.models import Alert
from lookout.household.models import Household
from lookout.identity.models import PersonIdentifier
from lookout.ingest.catalogue import Catalogue
from lookout.orgs import service
from lookout.orgs.models import OrgKind
from lookout.pipeline import PipelineConfig
from lookout.rules.model import load_rules
from lookout.rules.testcases import (
    Case,
    CaseFile,
    case_events,
    expected_set,
    load_case_file,
    run_file,
)
from lookout.settings import PROJECT_ROOT

RULES = {r.id: r for r in load_rules(PROJECT_ROOT / "rules")}
CASE_FILES = sorted((PROJECT_ROOT / "rules" / "tests").glob("*.yaml"))
CASES = [(path, case) for path in CASE_FILES for case in load_case_file(path).cases]


def test_every_rule_has_test_cases() -> None:
    assert {p.stem for p in CASE_FILES} == set(RULES)


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_replay_engine_passes_the_cases(path: Path) -> None:
    failed = [o.case for o in run_file(path, RULES) if not o.passed]
    assert failed == []


Found = frozenset[tuple[str, str, frozenset[str]]]


async def _pipeline_alerts(
    sessions: async_sessionmaker[AsyncSession], file: CaseFile, case: Case, rule_id: str
) -> tuple[Found, Found]:
    """(every alert of the rule, those not marked for review)."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Household.uprn, Alert.recipient_key, Alert.children, Alert.review_reason)
                .join(Household, Household.id == Alert.household_id)
                .where(Alert.rule_id == rule_id)
            )
        ).all()
        names: dict[int, str] = {}
        for person_id, scheme, value in (
            await session.execute(
                select(PersonIdentifier.person_id, PersonIdentifier.scheme, PersonIdentifier.value)
            )
        ).all():
            preferred = scheme in ("nhs_number", "upn")
            current = names.get(person_id)
            if current is None or (preferred and not current.startswith(("nhs_number", "upn"))):
                names[person_id] = f"{scheme}:{value}"
    found = [
        ((uprn, key, frozenset(names[c] for c in children)), reason is None)
        for uprn, key, children, reason in rows
    ]
    return frozenset(a for a, _ in found), frozenset(a for a, ok in found if ok)


@pytest.mark.asyncio
@pytest.mark.parametrize("order", ["as written", "reversed, one per batch"])
@pytest.mark.parametrize(("path", "case"), CASES, ids=[f"{p.stem}: {c.name}" for p, c in CASES])
async def test_pipeline_agrees(
    sessions: async_sessionmaker[AsyncSession], path: Path, case: Case, order: str
) -> None:
    file = load_case_file(path)
    events = case_events(file, case)
    async with sessions() as session, session.begin():
        for source in sorted({e["source"] for e in events}):
            await service.create_org(
                session,
                TEST_ACTOR,
                org_id=f"agency-{abs(hash(source)) % 10**8}",
                name=source,
                kind=OrgKind.agency,
                source=source,
            )
        schools = {e["data"]["school_urn"] for e in events if e["type"].endswith(".enrolment.v1")}
        for urn in sorted(schools):
            await service.create_org(
                session,
                TEST_ACTOR,
                org_id=f"school-{urn}",
                name=urn,
                kind=OrgKind.school,
                school_urn=urn,
            )
        for la in sorted({a["la_code"] for a in file.addresses.values()}):
            await service.create_org(
                session,
                TEST_ACTOR,
                org_id=f"cs-{la.lower()}",
                name=la,
                kind=OrgKind.children_services,
                la_code=la,
            )
    config = PipelineConfig(
        catalogue=Catalogue.load(PROJECT_ROOT / "schemas"),
        rules=list(RULES.values()),
        group_id="g",
        cluster_id="c",
        max_event_bytes=256 * 1024,
        max_future_skew=timedelta(minutes=5),
        alerting_horizon=timedelta(days=30),
        timezone=ZoneInfo("Europe/London"),
        clock=lambda: file.now,
    )
    feeder = Feeder(sessions, config)
    if order == "as written":
        result = await feeder.feed(events)
        assert result.rejections == [], [r.reason for r in result.rejections]
    else:
        for event in reversed(events):
            result = await feeder.feed([event])
            assert result.rejections == [], [r.reason for r in result.rejections]
    # An alert raised before a later fact made its conditions false is kept, marked for
    # review: every expected alert exists, and every alert not under review is expected.
    every, unreviewed = await _pipeline_alerts(sessions, file, case, file.rule)
    assert unreviewed <= expected_set(file, case) <= every
