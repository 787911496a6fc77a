"""``/v1/alerts``: a recipient organisation reads the alerts addressed to it, and only those."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query

from lookout.alerts import repository
from lookout.alerts.schemas import AlertDetail, AlertOut, AlertPage, EvidenceOut
from lookout.api.deps import ActorDep, SessionDep, SettingsDep
from lookout.audit.actions import Action
from lookout.audit.service import Entry, record
from lookout.errors import LookoutError, NotFound

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


def _encode_cursor(created_at: datetime, alert_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at.isoformat(), str(alert_id)])).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, alert_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), uuid.UUID(alert_id)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise LookoutError("cursor is not one this API gave out: start again without it") from exc


@router.get("", response_model=AlertPage, summary="List your organisation's alerts, newest first")
async def list_alerts(
    session: SessionDep,
    actor: ActorDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AlertPage:
    assert actor.org_id is not None
    before = _decode_cursor(cursor) if cursor else None
    limit = min(limit, settings.page_size_max)
    alerts = await repository.page_for_org(session, actor.org_id, limit=limit + 1, before=before)
    page, more = alerts[:limit], len(alerts) > limit
    await record(
        session,
        actor,
        [
            Entry(
                Action.alert_listed,
                "alert",
                None,
                details={"count": len(page), "alerts": [str(a.id) for a in page]},
            )
        ],
    )
    return AlertPage(
        items=[AlertOut.model_validate(a, from_attributes=True) for a in page],
        next_cursor=_encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    )


@router.get(
    "/{alert_id}",
    response_model=AlertDetail,
    summary="Read one alert with its explanation",
    responses={404: {"description": "No such alert for your organisation"}},
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
    evidence = await repository.evidence_of(session, alert_id)
    await record(session, actor, [Entry(Action.alert_read, "alert", str(alert_id))])
    return AlertDetail(
        **AlertOut.model_validate(alert, from_attributes=True).model_dump(),
        explanation=alert.explanation,
        evidence=[EvidenceOut.model_validate(e, from_attributes=True) for e in evidence],
    )
