"""``/v1/audit``: auditors read and verify the trail, and ask who has seen a person's
information. Every read here is itself audited, with the end user and purpose."""

from __future__ import annotations

import base64
import binascii
import csv
import io
from datetime import datetime
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from lookout import metrics
from lookout.api.deps import ActorDep, SessionDep, SettingsDep
from lookout.api.permissions import DENIED_RESPONSES, Permission, require
from lookout.audit import repository, signing
from lookout.audit.actions import Action
from lookout.audit.models import AuditRecord
from lookout.audit.schemas import (
    Access,
    AccessReport,
    AlertAboutPerson,
    AuditPage,
    AuditRecordOut,
    VerifyOut,
)
from lookout.audit.service import Entry, record
from lookout.audit.verify import verify
from lookout.errors import LookoutError, NotFound

router = APIRouter(prefix="/v1/audit", tags=["audit"])

ACCESS_LIMIT = 10_000
_READERS = [Depends(require(Permission.audit_read))]


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": seq})).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))["after"]
        if not isinstance(value, int) or value < 0:
            raise ValueError(cursor)
        return value
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
        raise LookoutError("cursor is not one this API gave out: start again without it") from exc


@router.get(
    "",
    response_model=AuditPage,
    summary="Read the audit trail in sequence order (auditors)",
    dependencies=_READERS,
    responses=DENIED_RESPONSES,
)
async def list_audit(
    session: SessionDep,
    actor: ActorDep,
    settings: SettingsDep,
    actor_org: Annotated[str | None, Query(max_length=64, description="Acting org")] = None,
    actor_client: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=80, description="e.g. api:alert:read")] = None,
    object_type: Annotated[
        str | None, Query(max_length=40, description="e.g. alert, person, household")
    ] = None,
    object_id: Annotated[str | None, Query(max_length=80)] = None,
    since: Annotated[datetime | None, Query(description="From this time (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="Before this time (exclusive)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AuditPage:
    after = _decode_cursor(cursor) if cursor else 0
    limit = min(limit, max(settings.page_size_max, 1))
    filters = repository.Filters(
        actor_org_id=actor_org,
        actor_client_id=actor_client,
        action=action,
        object_type=object_type,
        object_id=object_id,
        since=since,
        until=until,
    )
    rows = await repository.page(session, filters, after_seq=after, limit=limit + 1)
    page, more = rows[:limit], len(rows) > limit
    await record(
        session,
        actor,
        [
            Entry(
                Action.audit_listed,
                "audit",
                None,
                details={
                    "filters": {k: v for k, v in _filter_details(filters).items() if v},
                    "after": after,
                    "count": len(page),
                    "first": page[0].seq if page else None,
                    "last": page[-1].seq if page else None,
                },
            )
        ],
    )
    return AuditPage(
        items=[AuditRecordOut.model_validate(r, from_attributes=True) for r in page],
        next_cursor=_encode_cursor(page[-1].seq) if more else None,
    )


def _filter_details(filters: repository.Filters) -> dict[str, str | None]:
    return {
        "actor_org": filters.actor_org_id,
        "actor_client": filters.actor_client_id,
        "action": filters.action,
        "object_type": filters.object_type,
        "object_id": filters.object_id,
        "since": filters.since.isoformat() if filters.since else None,
        "until": filters.until.isoformat() if filters.until else None,
    }


def _accesses(rows: list[AuditRecord], alert_ids: set[str]) -> list[Access]:
    out = []
    for r in rows:
        listed = r.details.get("alerts") if isinstance(r.details, dict) else None
        covered = (
            [a for a in listed if a in alert_ids] if isinstance(listed, list) else [r.object_id]
        )
        out.append(
            Access(
                seq=r.seq,
                at=r.at,
                action=r.action,
                alert_id=r.object_id if r.object_type == "alert" else None,
                alert_ids=[a for a in covered if a],
                actor_org_id=r.actor_org_id,
                actor_client_id=r.actor_client_id,
                end_user=r.end_user,
                purpose=r.purpose,
                outcome=r.outcome,
                request_id=r.request_id,
            )
        )
    return out


CSV_COLUMNS = (
    "seq",
    "at",
    "action",
    "alert_id",
    "alert_ids",
    "actor_org_id",
    "actor_client_id",
    "end_user",
    "purpose",
    "outcome",
    "request_id",
)


def _csv(report: AccessReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for a in report.accesses:
        writer.writerow(
            [
                a.seq,
                a.at.isoformat(),
                a.action,
                a.alert_id or "",
                " ".join(a.alert_ids),
                a.actor_org_id or "",
                a.actor_client_id or "",
                a.end_user or "",
                a.purpose or "",
                a.outcome,
                a.request_id or "",
            ]
        )
    return buffer.getvalue()


@router.get(
    "/persons/{person_id}/access",
    response_model=AccessReport,
    summary="Who has seen this person's information (JSON, or CSV)",
    description=(
        "The alerts whose children include the person, and every audited read, list or "
        "action on them. CSV with `Accept: text/csv` or `?format=csv`."
    ),
    dependencies=_READERS,
    responses={
        **DENIED_RESPONSES,
        404: {"description": "No such person"},
        200: {"content": {"text/csv": {}}, "description": "The report"},
    },
)
async def person_access(
    person_id: int,
    request: Request,
    session: SessionDep,
    actor: ActorDep,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
) -> AccessReport | Response:
    as_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    if not await repository.person_exists(session, person_id):
        await record(
            session,
            actor,
            [Entry(Action.request_denied, "person", str(person_id), outcome="not_found")],
        )
        raise NotFound("no such person")
    alerts = await repository.alerts_about(session, person_id)
    alert_ids = {str(a.id) for a in alerts}
    rows = await repository.access_to_alerts(session, sorted(alert_ids), ACCESS_LIMIT + 1)
    report = AccessReport(
        person_id=person_id,
        alerts=[AlertAboutPerson.model_validate(a, from_attributes=True) for a in alerts],
        accesses=_accesses(rows[:ACCESS_LIMIT], alert_ids),
        truncated=len(rows) > ACCESS_LIMIT,
    )
    await record(
        session,
        actor,
        [
            Entry(
                Action.audit_exported if as_csv else Action.audit_access_report,
                "person",
                str(person_id),
                details={
                    "format": "csv" if as_csv else "json",
                    "alerts": sorted(alert_ids),
                    "accesses": len(report.accesses),
                },
            )
        ],
    )
    if as_csv:
        return Response(
            _csv(report),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="person-{person_id}-access.csv"'
            },
        )
    return report


@router.get(
    "/verify",
    response_model=VerifyOut,
    summary="Verify the whole audit trail: every link and every signed checkpoint",
    dependencies=[Depends(require(Permission.audit_verify))],
    responses=DENIED_RESPONSES,
)
async def verify_audit(session: SessionDep, actor: ActorDep, settings: SettingsDep) -> VerifyOut:
    report = await verify(session, signing.verify_key(settings), signing.checkpoint_dir(settings))
    metrics.AUDIT_VERIFICATIONS.labels("ok" if report.ok else "failed").inc()
    await record(
        session,
        actor,
        [
            Entry(
                Action.audit_verified,
                "audit",
                None,
                outcome="ok" if report.ok else "failed",
                details={
                    "records_checked": report.records_checked,
                    "sealed_through": report.sealed_through,
                    "first_bad_seq": report.first_bad_seq,
                    "bad_checkpoint_seq": report.bad_checkpoint_seq,
                },
            )
        ],
    )
    return VerifyOut(
        ok=report.ok,
        records_checked=report.records_checked,
        sealed_through=report.sealed_through,
        unsealed=report.unsealed,
        checkpoints_checked=report.checkpoints_checked,
        first_bad_seq=report.first_bad_seq,
        bad_checkpoint_seq=report.bad_checkpoint_seq,
        problem=report.problem,
    )
