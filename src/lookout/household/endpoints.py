"""``/v1/households``: a practitioner reads a household as it was during an alert's period."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.api.deps import ActorDep, PrincipalDep, SessionDep, SettingsDep
from lookout.api.permissions import DENIED_RESPONSES, Permission, require
from lookout.household import service
from lookout.household.schemas import HouseholdOut
from lookout.orgs import repository as orgs_repository
from lookout.orgs.security import Principal

router = APIRouter(prefix="/v1/households", tags=["households"])

AS_OF = Query(
    description=(
        "The date to read the household as of (Europe/London). It must fall within the "
        "period of an alert you hold about it: [trigger date - the read window, closure or "
        "today]. Default: the newest alert's trigger date."
    )
)


async def reader_of(session: AsyncSession, principal: Principal) -> service.Reader:
    org = await orgs_repository.get_org(session, principal.org_id)
    return service.Reader(
        org_id=principal.org_id,
        kind=principal.org_kind,
        school_urn=org.school_urn if org is not None else None,
    )


@router.get(
    "/{household_id}",
    response_model=HouseholdOut,
    summary="Read a household as of a date within the period of an alert you hold about it",
    dependencies=[Depends(require(Permission.households_read))],
    responses={
        **DENIED_RESPONSES,
        403: {"description": "as_of is outside the periods of your alerts about it"},
        404: {"description": "You hold no alert about this household"},
    },
)
async def read_household(
    household_id: int,
    session: SessionDep,
    actor: ActorDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    as_of: Annotated[date | None, AS_OF] = None,
) -> HouseholdOut:
    return await service.read_household(
        session,
        actor,
        await reader_of(session, principal),
        household_id,
        as_of,
        window_days=settings.household_read_window_days,
        tz=ZoneInfo(settings.timezone),
    )
