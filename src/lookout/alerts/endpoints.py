"""``/v1/alerts``: a recipient organisation reads and works the alerts addressed to it, and
only those. Every query starts from ``repository.visible_to(org)``: another organisation's
alert answers 404, exactly like one that does not exist."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import TypeAdapter

from lookout.alerts import repository, service
from lookout.alerts.models import Alert, AlertStatus
from lookout.alerts.schemas import (
    AlertDetail,
    AlertOut,
    AlertPage,
    AssignIn,
    CloseIn,
    EvidenceOut,
    NoteIn,
    NoteOut,
    UndeliverableOut,
    UndeliverablePage,
)
from lookout.api.deps import (
    ActorDep,
    PrincipalDep,
    SessionDep,
    SettingsDep,
    commit_each_statement,
    request_id,
)
from lookout.api.permissions import Permission, require
from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.errors import LookoutError, NotFound
from lookout.rules.model import Severity

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
operator_router = APIRouter(prefix="/v1/operator", tags=["operations"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such alert for your organisation"}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "The alert's status does not allow this (the reason says why)"}
}
_COMMON: dict[int | str, dict[str, Any]] = {
    400: {"description": "Missing X-Lookout-End-User / X-Lookout-Purpose, or a bad cursor"},
    401: {"description": "No or expired access token"},
    403: {"description": "Your organisation's kind may not do this"},
}


def _encode_cursor(created_at: datetime, alert_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at.isoformat(), str(alert_id)])).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, alert_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), uuid.UUID(alert_id)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise LookoutError("cursor is not one this API gave out: start again without it") from exc


@router.get(
    "",
    response_model=AlertPage,
    summary="List your organisation's alerts: newest first, or by sequence",
    description=(
        "Without `after_sequence`: newest first, paged with the opaque `cursor` (stable "
        "while new alerts arrive). With `after_sequence=N`: ascending sequence from N "
        "(exclusive); the sequence is gapless per organisation, so a missing number means "
        "an alert you have not read yet."
    ),
    dependencies=[Depends(require(Permission.alerts_read))],
    responses=_COMMON,
)
async def list_alerts(
    session: SessionDep,
    actor: ActorDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    after_sequence: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    status: AlertStatus | None = None,
    severity: Severity | None = None,
    rule: Annotated[str | None, Query(max_length=100)] = None,
    team: Annotated[
        str | None, Query(max_length=200, description="Alerts assigned to this team")
    ] = None,
    created_since: datetime | None = None,
    created_until: datetime | None = None,
) -> Response:
    assert actor.org_id is not None
    if cursor is not None and after_sequence is not None:
        raise LookoutError("use either cursor (newest first) or after_sequence, not both")
    filters = repository.Filters(
        status=status.value if status else None,
        severity=severity.value if severity else None,
        rule_id=rule,
        team=team,
        created_since=created_since,
        created_until=created_until,
    )
    limit = min(limit, settings.page_size_max)
    next_cursor = None
    await commit_each_statement(session)  # the page's read, then its audit record
    if after_sequence is not None:
        page = await repository.after_sequence(
            session, actor.org_id, after_sequence, limit=limit, filters=filters
        )
    else:
        before = _decode_cursor(cursor) if cursor else None
        alerts = await repository.page_for_org(
            session, actor.org_id, limit=limit + 1, before=before, filters=filters
        )
        page = alerts[:limit]
        if len(alerts) > limit:
            next_cursor = _encode_cursor(page[-1]["created_at"], page[-1]["id"])
    await record(
        session,
        actor,
        [
            Entry(
                Action.alert_listed,
                "alert",
                None,
                details={"count": len(page), "alerts": [str(a["id"]) for a in page]},
            )
        ],
    )
    _LISTED.validate_python(page)  # the rows are what AlertPage declares, or this raises
    return Response(page_json(page, next_cursor), media_type="application/json")


# A page's rows validated in one call (pydantic-core walks the list), not one model at a time.
_LISTED = TypeAdapter(list[AlertOut])


def page_json(items: list[dict[str, Any]], next_cursor: str | None) -> bytes:
    """An ``AlertPage`` of validated rows as JSON: the bytes FastAPI would send for the
    ``AlertPage`` built from them (pydantic's JSON of UUIDs, ISO 8601 datetimes with ``Z``
    for UTC, which is how asyncpg returns every ``timestamptz``), written by orjson from
    the rows themselves instead of 51 models built, checked again and dumped (about
    0.3 ms of CPU per page). The rows are the repository's, keyed in ``AlertOut``'s field
    order (``LISTED_COLUMNS``). A test holds the two to the same bytes."""
    return orjson.dumps(
        {"items": items, "next_cursor": next_cursor}, default=_uuid, option=orjson.OPT_UTC_Z
    )


def _uuid(value: object) -> str:
    # asyncpg's UUID is a subclass of uuid.UUID, which orjson leaves to ``default``.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} in a page of alerts")


def _out(alert: Alert) -> AlertOut:
    return AlertOut.model_validate(alert, from_attributes=True)


async def _detail(session: SessionDep, alert: Alert) -> AlertDetail:
    evidence = await repository.evidence_of(session, alert.id)
    notes = await repository.notes_of(session, alert.id)
    return AlertDetail(
        **_out(alert).model_dump(),
        explanation=alert.explanation,
        evidence=[EvidenceOut.model_validate(e, from_attributes=True) for e in evidence],
        notes=[NoteOut.model_validate(n, from_attributes=True) for n in notes],
    )


@router.get(
    "/{alert_id}",
    response_model=AlertDetail,
    summary="Read one alert with its explanation",
    dependencies=[Depends(require(Permission.alerts_read))],
    responses={**_COMMON, **_NOT_FOUND},
)
async def read_alert(alert_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> AlertDetail:
    assert actor.org_id is not None
    alert = await repository.get_for_org(session, actor.org_id, alert_id)
    if alert is None:
        await record(
            session,
            actor,
            [Entry(Action.request_denied, "alert", str(alert_id), outcome="not_found")],
        )
        raise NotFound("no such alert for your organisation")
    await record(session, actor, [Entry(Action.alert_read, "alert", str(alert_id))])
    return await _detail(session, alert)


_WORK = {
    "dependencies": [Depends(require(Permission.alerts_work))],
    "responses": {**_COMMON, **_NOT_FOUND, **_CONFLICT},
}


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertDetail,
    summary="Acknowledge a new alert",
    **_WORK,  # type: ignore[arg-type]
)
async def acknowledge(alert_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> AlertDetail:
    return await _detail(session, await service.acknowledge(session, actor, alert_id))


@router.post(
    "/{alert_id}/assign",
    response_model=AlertDetail,
    summary="Assign an open alert to a named worker or team of your organisation",
    **_WORK,  # type: ignore[arg-type]
)
async def assign(
    alert_id: uuid.UUID, body: AssignIn, session: SessionDep, actor: ActorDep
) -> AlertDetail:
    alert = await service.assign(session, actor, alert_id, body.kind, body.name)
    return await _detail(session, alert)


@router.post(
    "/{alert_id}/close",
    response_model=AlertDetail,
    summary="Close an open alert with an outcome",
    **_WORK,  # type: ignore[arg-type]
)
async def close(
    alert_id: uuid.UUID, body: CloseIn, session: SessionDep, actor: ActorDep
) -> AlertDetail:
    alert = await service.close(session, actor, alert_id, body.outcome, body.text)
    return await _detail(session, alert)


@router.post(
    "/{alert_id}/notes",
    response_model=NoteOut,
    status_code=201,
    summary="Add a note to an alert",
    **_WORK,  # type: ignore[arg-type]
)
async def add_note(
    alert_id: uuid.UUID, body: NoteIn, session: SessionDep, actor: ActorDep
) -> NoteOut:
    note = await service.add_note(session, actor, alert_id, body.text)
    return NoteOut.model_validate(note, from_attributes=True)


@operator_router.get(
    "/undeliverable-alerts",
    response_model=UndeliverablePage,
    summary="Alerts raised with no registered recipient organisation (operators)",
    dependencies=[Depends(require(Permission.undeliverable_read))],
    responses=_COMMON,
)
async def undeliverable(
    request: Request,
    request_principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> UndeliverablePage:
    alerts = await repository.undeliverable(session, limit=limit, offset=offset)
    actor = Actor(
        org_id=request_principal.org_id,
        client_id=request_principal.client_id,
        request_id=request_id(request),
    )
    await record(
        session,
        actor,
        [Entry(Action.undeliverable_listed, "alert", None, details={"count": len(alerts)})],
    )
    return UndeliverablePage(
        items=[UndeliverableOut.model_validate(a, from_attributes=True) for a in alerts]
    )
