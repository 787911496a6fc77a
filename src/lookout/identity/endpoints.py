"""``/v1/identity`` (review and undo, for identity reviewers) and ``/v1/persons`` (reads).

Identity reviewers are operators, and organisations the operator grants the role
(``LOOKOUT_IDENTITY_REVIEWER_ORGS``). Every list, decision and unlink is audited with the
end user and purpose of the request.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from lookout import pipeline
from lookout.api.deps import ActorDep, PrincipalDep, SessionDep, SettingsDep
from lookout.api.permissions import DENIED_RESPONSES, Permission, allowed, require
from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.errors import Forbidden
from lookout.household import service as household
from lookout.household.endpoints import AS_OF, reader_of
from lookout.household.schemas import PersonOut
from lookout.identity import repository, service
from lookout.identity.models import MatchStatus
from lookout.identity.schemas import (
    DecisionOut,
    PersonSummary,
    PossibleMatchOut,
    PossibleMatchPage,
    UnlinkIn,
    UnlinkOut,
)
from lookout.ingest import repository as ingest
from lookout.ingest.catalogue import Catalogue
from lookout.orgs.security import Principal
from lookout.rules.model import load_rules
from lookout.settings import Settings

router = APIRouter(prefix="/v1/identity", tags=["identity"])
persons_router = APIRouter(prefix="/v1/persons", tags=["households"])

DENIED: dict[int | str, dict[str, Any]] = {
    403: {"description": "Your organisation does not have the identity_reviewer role"}
}


async def _require_reviewer(
    session: AsyncSession, actor: Actor, principal: Principal, settings: Settings
) -> None:
    if (
        allowed(principal.org_kind, Permission.identity_review)
        or principal.org_id in settings.identity_reviewer_orgs
    ):
        return
    await record(
        session, actor, [Entry(Action.request_denied, "identity", None, outcome="not_reviewer")]
    )
    raise Forbidden(
        "identity review needs the identity_reviewer role: ask an operator to grant it "
        "(LOOKOUT_IDENTITY_REVIEWER_ORGS)"
    )


def evaluation_config(settings: Settings) -> pipeline.PipelineConfig:
    """The rules and horizon the worker evaluates with (for re-evaluation after a review)."""
    return pipeline.PipelineConfig(
        catalogue=Catalogue.load(settings.schemas_dir),
        rules=load_rules(settings.rules_dir),
        group_id="review",
        cluster_id="review",
        max_event_bytes=settings.max_event_bytes,
        max_future_skew=timedelta(seconds=settings.max_future_skew_s),
        alerting_horizon=timedelta(days=settings.alerting_horizon_days),
        timezone=ZoneInfo(settings.timezone),
        clock=lambda: datetime.now(UTC),
    )


def _config(request: Request, settings: Settings) -> pipeline.PipelineConfig:
    """Loaded once per app."""
    config: pipeline.PipelineConfig | None = getattr(request.app.state, "pipeline_config", None)
    if config is None:
        config = request.app.state.pipeline_config = evaluation_config(settings)
    return config


@router.get(
    "/possible-matches",
    response_model=PossibleMatchPage,
    summary="List possible matches and identifier conflicts waiting for review",
    responses=DENIED,
)
async def list_possible_matches(
    session: SessionDep,
    actor: ActorDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    status: Annotated[MatchStatus, Query()] = MatchStatus.open,
    after_id: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> PossibleMatchPage:
    await _require_reviewer(session, actor, principal, settings)
    matches = await repository.list_possible_matches(
        session, status=status, after_id=after_id, limit=limit + 1
    )
    page, more = matches[:limit], len(matches) > limit
    ids = {p for m in page for p in (m.person_id, m.other_person_id)}
    people = await repository.persons(session, ids)
    schemes = await repository.identifiers_of(session, ids)
    await record(
        session,
        actor,
        [
            Entry(
                Action.possible_matches_listed,
                "possible_match",
                None,
                details={"matches": [m.id for m in page]},
            )
        ],
    )

    def summary(person_id: int) -> PersonSummary:
        p = people[person_id]
        return PersonSummary(
            id=p.id,
            given_name=p.given_name,
            family_name=p.family_name,
            birth_date=p.birth_date,
            postcode=p.postcode,
            identifier_schemes=sorted({s for s, _ in schemes.get(person_id, [])}),
        )

    return PossibleMatchPage(
        items=[
            PossibleMatchOut(
                id=m.id,
                kind=m.kind,
                person_id=m.person_id,
                other_person_id=m.other_person_id,
                score=m.score,
                evidence=m.evidence,
                status=m.status,
                created_at=m.created_at,
                persons=[summary(m.person_id), summary(m.other_person_id)],
            )
            for m in page
        ],
        next_after_id=page[-1].id if more else None,
    )


@router.post(
    "/possible-matches/{match_id}/confirm",
    response_model=DecisionOut,
    summary="Confirm two persons are one: merge them and re-evaluate their households",
    responses={**DENIED, 404: {"description": "No such match"}, 409: {"description": "Decided"}},
)
async def confirm_match(
    match_id: int,
    request: Request,
    session: SessionDep,
    actor: ActorDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> DecisionOut:
    await _require_reviewer(session, actor, principal, settings)
    decision, raised = await confirm_and_reevaluate(
        session, actor, match_id, _config(request, settings)
    )
    return DecisionOut(
        match_id=decision.match_id,
        status=decision.status,
        survivor_id=decision.survivor_id,
        merge_id=decision.merge_id,
        alerts_raised=raised,
    )


async def confirm_and_reevaluate(
    session: AsyncSession, actor: Actor, match_id: int, config: pipeline.PipelineConfig
) -> tuple[service.Decision, int]:
    """Confirm a match, then rebuild the merged persons' graph and re-evaluate the
    households it touched, as the worker does after a merge."""
    decision = await service.confirm(session, actor, match_id)
    audit: list[Entry] = []
    raised = await pipeline.reevaluate(session, config, set(decision.rebuild), audit)
    await record(session, actor, audit)
    return decision, len(raised)


@router.post(
    "/possible-matches/{match_id}/reject",
    response_model=DecisionOut,
    summary="Record that two persons are different people",
    responses={**DENIED, 404: {"description": "No such match"}, 409: {"description": "Decided"}},
)
async def reject_match(
    match_id: int,
    session: SessionDep,
    actor: ActorDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> DecisionOut:
    await _require_reviewer(session, actor, principal, settings)
    decision = await service.reject(session, actor, match_id)
    return DecisionOut(match_id=decision.match_id, status=decision.status)


@router.post(
    "/persons/{person_id}/unlink",
    response_model=UnlinkOut,
    summary="Undo a wrong merge: restore the merged person and mark affected alerts for review",
    responses={**DENIED, 404: {"description": "No merge into this person to undo"}},
)
async def unlink_person(
    person_id: int,
    request: Request,
    session: SessionDep,
    actor: ActorDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    body: UnlinkIn | None = None,
) -> UnlinkOut:
    await _require_reviewer(session, actor, principal, settings)
    done = await unlink_and_rebuild(
        session,
        actor,
        person_id,
        body.merged_person_id if body else None,
        _config(request, settings),
    )
    return UnlinkOut(
        merge_id=done.merge_id,
        person_id=done.person_id,
        restored_person_id=done.restored_person_id,
        moved_identifiers=done.moved_identifiers,
        moved_events=done.moved_events,
        alerts_marked_for_review=[str(a) for a in done.alerts_for_review],
    )


async def unlink_and_rebuild(
    session: AsyncSession,
    actor: Actor,
    person_id: int,
    merged_person_id: int | None,
    config: pipeline.PipelineConfig,
) -> service.Unlinked:
    """Unlink, then rebuild both persons' graph; existing alerts are marked for review by
    the unlink, and any alert the restored facts now call for is raised as new."""
    sources = await repository.event_sources(session, person_id)
    agencies = await ingest.agencies_by_source(session, sources)
    done = await service.unlink(session, actor, person_id, merged_person_id, agencies)
    audit: list[Entry] = []
    await pipeline.reevaluate(session, config, set(done.rebuild), audit)
    await record(session, actor, audit)
    return done


@persons_router.get(
    "/{person_id}",
    response_model=PersonOut,
    summary="Read a person as of a date within the period of an alert about their household",
    dependencies=[Depends(require(Permission.households_read))],
    responses={
        **DENIED_RESPONSES,
        403: {"description": "as_of is outside the periods of your alerts"},
        404: {"description": "You hold no alert about a household of this person"},
    },
)
async def read_person(
    person_id: int,
    session: SessionDep,
    actor: ActorDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    as_of: Annotated[date | None, AS_OF] = None,
) -> PersonOut:
    return await household.read_person(
        session,
        actor,
        await reader_of(session, principal),
        person_id,
        as_of,
        window_days=settings.household_read_window_days,
        tz=ZoneInfo(settings.timezone),
    )
