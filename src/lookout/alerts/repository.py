"""SQL for alerts and their evidence."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    bindparam,
    case,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.alerts.models import Alert, AlertEvidence, AlertNote, AlertStatus
from lookout.db import any_of, column_arrays, fetch, json_dumps
from lookout.ingest.models import Event
from lookout.orgs.models import Organisation, OrgKind


async def children_services_by_la(session: AsyncSession, la_codes: Iterable[str]) -> dict[str, str]:
    codes = list(set(la_codes))
    if not codes:
        return {}
    rows = await fetch(
        session,
        "SELECT la_code, id FROM organisations WHERE kind = $1 AND la_code = ANY($2::text[])"
        " ORDER BY id",
        OrgKind.children_services.value,
        codes,
    )
    found: dict[str, str] = {}
    for la_code, org_id in rows:
        if la_code is not None:
            found.setdefault(la_code, org_id)
    return found


async def schools_by_urn(session: AsyncSession, urns: Iterable[str]) -> dict[str, str]:
    """The organisation of each school: the one registered with its URN (``--kind school
    --school-urn URN``), else the registered school organisation that its enrolment events
    name as the designated safeguarding lead (``dsl_org_id``; the first by id)."""
    codes = list(set(urns))
    if not codes:
        return {}
    school = OrgKind.school.value
    rows = await fetch(
        session,
        "SELECT school_urn, id FROM organisations WHERE kind = $1 AND school_urn = ANY($2::text[])",
        school,
        codes,
    )
    found = {urn: org_id for urn, org_id in rows if urn is not None}
    missing = [c for c in codes if c not in found]
    if missing:
        named = await fetch(
            session,
            "SELECT e.school_urn, min(o.id) FROM enrolments e"
            " JOIN organisations o ON o.id = e.dsl_org_id"
            " WHERE o.kind = $1 AND e.school_urn = ANY($2::text[]) GROUP BY e.school_urn",
            school,
            missing,
        )
        found |= {urn: org_id for urn, org_id in named if org_id is not None}
    return found


async def recipients(session: AsyncSession, keys: Iterable[str]) -> dict[str, str]:
    """The organisation for each recipient key (``children_services:<LA code>``,
    ``school:<URN>``); keys with no registered organisation are left out."""
    by_kind: dict[str, set[str]] = {}
    for key in keys:
        kind, _, value = key.partition(":")
        by_kind.setdefault(kind, set()).add(value)
    found = {
        f"children_services:{la}": org
        for la, org in (
            await children_services_by_la(session, by_kind.get("children_services", ()))
        ).items()
    }
    found |= {
        f"school:{urn}": org
        for urn, org in (await schools_by_urn(session, by_kind.get("school", ()))).items()
    }
    return found


@dataclass(frozen=True, slots=True)
class Supported:
    """An alert, the children it names, and the events that are its evidence, each with the
    children it named for the alert when last evaluated (None: unknown, written before
    migration 0010)."""

    id: uuid.UUID
    rule_id: str
    household_id: int
    recipient_key: str
    children: frozenset[int]
    evidence: dict[int, frozenset[int] | None]


async def unreviewed_alerts_with_evidence(
    session: AsyncSession, event_pks: Iterable[int]
) -> list[Supported]:
    """Alerts not yet marked for review that hold any of these events as evidence, each
    with all of its evidence events."""
    pks = list(set(event_pks))
    if not pks:
        return []
    rows = await fetch(session, _UNREVIEWED_WITH_EVIDENCE, pks)
    return [
        Supported(
            r[0],
            r[1],
            r[2],
            r[3],
            frozenset(r[4] or ()),
            {e: None if named is None else frozenset(named) for e, named in r[5]},
        )
        for r in rows
    ]


# The evidence rows of these events first (ix_alert_evidence_event_id), then their alerts
# and each alert's whole evidence. Written as a semi-join, a young table whose statistics
# still said "empty" was planned as all alerts joined to all evidence, then filtered.
_UNREVIEWED_WITH_EVIDENCE = """
    SELECT a.id, a.rule_id, a.household_id, a.recipient_key, a.children,
        jsonb_agg(jsonb_build_array(e.event_id, e.children))
    FROM (SELECT DISTINCT alert_id FROM alert_evidence WHERE event_id = ANY($1)) AS hit
    JOIN alerts a ON a.id = hit.alert_id
    JOIN alert_evidence e ON e.alert_id = a.id
    WHERE a.review_reason IS NULL
    GROUP BY a.id
"""


async def set_evidence_children(
    session: AsyncSession, rows: Sequence[tuple[uuid.UUID, int, Collection[int]]]
) -> None:
    """Record, for these (alert id, event, children), the children the event named for the
    alert when evaluated now (empty: it no longer matches); one statement."""
    if rows:
        await fetch(
            session,
            "UPDATE alert_evidence SET children = u.children::jsonb"
            " FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS u(alert_id, event_id, children)"
            " WHERE alert_evidence.alert_id = u.alert_id AND alert_evidence.event_id = u.event_id",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [json_dumps(sorted(r[2])) for r in rows],
        )


# The worker's writes: a few statements per batch, whatever the number of matches. Keys
# (rule, household, recipient) travel as three arrays: one prepared statement per shape.
_OPEN_ALERTS = """
    SELECT a.id, a.rule_id, a.household_id, a.recipient_key, a.children
    FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(rule_id, household_id, recipient_key)
    JOIN alerts a ON a.rule_id = k.rule_id AND a.household_id = k.household_id
        AND a.recipient_key = k.recipient_key
    WHERE a.status <> 'closed'
"""
_CLOSED_ALERTS = """
    SELECT a.rule_id, a.household_id, a.recipient_key, max(a.closed_at) AS last_closed,
           array_remove(array_agg(e.event_id), NULL) AS evidence
    FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(rule_id, household_id, recipient_key)
    JOIN alerts a ON a.rule_id = k.rule_id AND a.household_id = k.household_id
        AND a.recipient_key = k.recipient_key
    LEFT JOIN alert_evidence e ON e.alert_id = a.id AND e.event_id = ANY($4::bigint[])
    WHERE a.status = 'closed'
    GROUP BY a.rule_id, a.household_id, a.recipient_key
"""

AlertKey = tuple[str, int, str]  # (rule id, household id, recipient key)


@dataclass(frozen=True, slots=True)
class OpenAlert:
    id: uuid.UUID
    children: frozenset[int]


@dataclass(frozen=True, slots=True)
class ClosedAlerts:
    """What the closed alerts of one (rule, household, recipient) say about new matches:
    when the last was closed, and which of the events asked about are their evidence."""

    last_closed: datetime | None
    evidence: frozenset[int]


def _keys(keys: Iterable[AlertKey]) -> list[list[Any]]:
    """The keys as three arrays (rule ids, household ids, recipient keys)."""
    wanted = sorted(set(keys))
    return [[k[0] for k in wanted], [k[1] for k in wanted], [k[2] for k in wanted]]


async def open_alerts(session: AsyncSession, keys: Iterable[AlertKey]) -> dict[AlertKey, OpenAlert]:
    """The open (not closed) alert of each (rule, household, recipient) that has one."""
    arrays = _keys(keys)
    if not arrays[0]:
        return {}
    rows = await fetch(session, _OPEN_ALERTS, *arrays)
    return {(r[1], r[2], r[3]): OpenAlert(r[0], frozenset(r[4] or ())) for r in rows}


async def closed_alerts(
    session: AsyncSession, keys: Iterable[AlertKey], event_pks: Iterable[int]
) -> dict[AlertKey, ClosedAlerts]:
    """For each key with closed alerts: the latest closure, and which of ``event_pks``
    a closed alert already holds as evidence."""
    arrays = _keys(keys)
    if not arrays[0]:
        return {}
    rows = await fetch(session, _CLOSED_ALERTS, *arrays, sorted(set(event_pks)))
    return {(r[0], r[1], r[2]): ClosedAlerts(r[3], frozenset(r[4])) for r in rows}


_INSERT_OPEN_ALERTS = """
    INSERT INTO alerts (id, rule_id, rule_version, severity, household_id, recipient_key,
        recipient_org_id, status, summary, children, explanation, trigger_event_id,
        trigger_time, review_by)
    SELECT id, rule_id, rule_version, severity, household_id, recipient_key,
        recipient_org_id, 'new', summary, children::jsonb,
        explanation::jsonb, trigger_event_id, trigger_time, review_by
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::timestamptz[],
        $13::timestamptz[])
        AS r(id, rule_id, rule_version, severity, household_id, recipient_key,
            recipient_org_id, summary, children, explanation, trigger_event_id, trigger_time,
            review_by)
    ON CONFLICT (rule_id, household_id, recipient_key) WHERE status <> 'closed' DO NOTHING
    RETURNING id
"""
_NEW_ALERT_COLUMNS = (
    "id",
    "rule_id",
    "rule_version",
    "severity",
    "household_id",
    "recipient_key",
    "recipient_org_id",
    "summary",
    "children",
    "explanation",
    "trigger_event_id",
    "trigger_time",
    "review_by",
)
_NEW_ALERT_JSON = frozenset({"children", "explanation"})


async def insert_open_alerts(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> set[uuid.UUID]:
    """Insert alerts (one statement, the columns as arrays), skipping any whose (rule,
    household, recipient) has an open alert already (another writer got there first);
    returns the ids inserted."""
    if not rows:
        return set()
    columns = column_arrays(rows, _NEW_ALERT_COLUMNS, _NEW_ALERT_JSON)
    return {r[0] for r in await fetch(session, _INSERT_OPEN_ALERTS, *columns)}


_ADD_CHILDREN = text(
    """
    UPDATE alerts
    SET children = (
            SELECT jsonb_agg(DISTINCT c ORDER BY c)
            FROM jsonb_array_elements(alerts.children || CAST(u.new AS jsonb)) AS c
        ),
        explanation = CAST(u.explanation AS jsonb),
        updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:new AS text[]), CAST(:explanations AS text[]))
        AS u(id, new, explanation)
    WHERE alerts.id = u.id AND NOT alerts.children @> CAST(u.new AS jsonb)
    """
)


async def add_children(
    session: AsyncSession, updates: Sequence[tuple[uuid.UUID, Sequence[int], dict[str, Any]]]
) -> None:
    """Add children a later evaluation found (a child who moved in, a late residence) to
    open alerts, each with that evaluation's explanation; children are never removed. One
    statement for all (alert id, children, explanation); an alert that already names them
    all is left as it is."""
    updates = [u for u in updates if u[1]]
    if not updates:
        return
    await session.execute(
        _ADD_CHILDREN,
        {
            "ids": [u[0] for u in updates],
            "new": [orjson.dumps(sorted(set(u[1]))).decode() for u in updates],
            "explanations": [orjson.dumps(u[2]).decode() for u in updates],
        },
    )


async def add_evidence(
    session: AsyncSession, rows: Sequence[tuple[uuid.UUID, int, str, Collection[int]]]
) -> set[tuple[uuid.UUID, int]]:
    """Add (alert id, event, role, children named) evidence rows; returns the (alert id,
    event) pairs that were new (an event is evidence of an alert once, in the role it first
    had; an existing row keeps what it holds)."""
    first: dict[tuple[uuid.UUID, int], tuple[str, Collection[int]]] = {}
    for alert_id, event_pk, role, children in rows:
        first.setdefault((alert_id, event_pk), (role, children))
    if not first:
        return set()
    added = await fetch(
        session,
        "INSERT INTO alert_evidence (alert_id, event_id, role, children)"
        " SELECT alert_id, event_id, role, children::jsonb"
        " FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[])"
        " AS r(alert_id, event_id, role, children)"
        " ON CONFLICT DO NOTHING RETURNING alert_id, event_id",
        [a for a, _ in first],
        [e for _, e in first],
        [role for role, _ in first.values()],
        [json_dumps(sorted(children)) for _, children in first.values()],
    )
    return {(r[0], r[1]) for r in added}


async def alerts_with_evidence(session: AsyncSession, event_pks: Sequence[int]) -> list[uuid.UUID]:
    if not event_pks:
        return []
    rows = await session.execute(
        select(AlertEvidence.alert_id).where(any_of(AlertEvidence.event_id, event_pks)).distinct()
    )
    return list(rows.scalars())


async def alerts_involving(session: AsyncSession, person_ids: Sequence[int]) -> list[uuid.UUID]:
    """Alerts whose evidence events are about these persons or whose children include them."""
    if not person_ids:
        return []
    by_evidence = (
        select(AlertEvidence.alert_id)
        .join(Event, Event.id == AlertEvidence.event_id)
        .where(Event.subject_person_id.in_(list(person_ids)))
    )
    by_children = select(Alert.id).where(or_(*(Alert.children.contains([p]) for p in person_ids)))
    rows = await session.execute(
        select(Alert.id).where(Alert.id.in_(by_evidence.union(by_children)))
    )
    return sorted(set(rows.scalars()))


@dataclass(frozen=True, slots=True)
class HeldAlert:
    id: uuid.UUID
    household_id: int
    trigger_time: datetime
    closed_at: datetime | None


async def held_about(
    session: AsyncSession, org_id: str, household_ids: Iterable[int]
) -> list[HeldAlert]:
    """The alerts an organisation holds about these households (any status)."""
    ids = list(set(household_ids))
    if not ids:
        return []
    rows = await session.execute(
        select(Alert.id, Alert.household_id, Alert.trigger_time, Alert.closed_at).where(
            Alert.recipient_org_id == org_id, Alert.household_id.in_(ids)
        )
    )
    return [HeldAlert(*r) for r in rows]


async def mark_for_review(
    session: AsyncSession, alert_ids: Sequence[uuid.UUID], reason: str
) -> list[tuple[uuid.UUID, str | None]]:
    """Set the review reason; returns (alert id, recipient organisation) of each alert."""
    if not alert_ids:
        return []
    rows = await session.execute(
        update(Alert)
        .where(Alert.id.in_(alert_ids))
        .values(review_reason=reason, updated_at=func.now())
        .returning(Alert.id, Alert.recipient_org_id)
    )
    return [(r.id, r.recipient_org_id) for r in rows]


AGE_BANDS = (
    ("lt_1h", timedelta(hours=1)),
    ("lt_1d", timedelta(days=1)),
    ("lt_7d", timedelta(days=7)),
)
AGE_OLDEST = "ge_7d"


async def open_alert_counts(session: AsyncSession) -> list[tuple[str, str, int]]:
    """(severity, age band, count) of alerts not yet closed."""
    band = case(
        *((Alert.created_at > func.now() - span, name) for name, span in AGE_BANDS),
        else_=AGE_OLDEST,
    )
    rows = await session.execute(
        select(Alert.severity, band, func.count())
        .where(Alert.status != AlertStatus.closed)
        .group_by(Alert.severity, band)
    )
    return [(severity, age, count) for severity, age, count in rows]


async def undeliverable_count(session: AsyncSession) -> int:
    rows = await session.execute(
        select(func.count()).where(
            Alert.recipient_org_id.is_(None), Alert.status != AlertStatus.closed
        )
    )
    return int(rows.scalar_one())


def visible_to(org_id: str) -> Select[Alert]:
    """Every query of alerts on behalf of an organisation starts here (or, for lists, at
    ``_listing``: the same condition)."""
    return select(Alert).where(Alert.recipient_org_id == org_id)


_c = Alert.__table__.c

# What a list shows of each alert (``AlertOut``; a test keeps the two the same). Lists read
# these columns as plain rows with Core, not as ORM objects: a page is read-only, and
# building 50 tracked instances (identity map, instance state) per request was a large
# part of a listing's CPU. Never the explanation, the largest column.
LISTED_COLUMNS = (
    "id",
    "rule_id",
    "rule_version",
    "severity",
    "status",
    "household_id",
    "children",
    "summary",
    "trigger_time",
    "created_at",
    "updated_at",
    "review_reason",
    "sequence",
    "acknowledged_at",
    "assignee_kind",
    "assignee",
    "closed_at",
    "outcome",
    "outcome_text",
    "review_by",
    "escalated_at",
)


@dataclass(frozen=True, slots=True)
class Filters:
    status: str | None = None
    severity: str | None = None
    rule_id: str | None = None
    team: str | None = None
    created_since: datetime | None = None
    created_until: datetime | None = None

    def values(self) -> dict[str, Any]:
        """The filters that are set (an empty one is not), by name: the names of their
        bound parameters."""
        return {name: value for name in self.__slots__ if (value := getattr(self, name))}


# Each filter as conditions on a bound parameter named after it.
_FILTER_CONDITIONS: dict[str, tuple[ColumnElement[bool], ...]] = {
    "status": (_c.status == bindparam("status"),),
    "severity": (_c.severity == bindparam("severity"),),
    "rule_id": (_c.rule_id == bindparam("rule_id"),),
    "team": (_c.assignee_kind == "team", _c.assignee == bindparam("team")),
    "created_since": (_c.created_at >= bindparam("created_since"),),
    "created_until": (_c.created_at < bindparam("created_until"),),
}


@dataclass(frozen=True, slots=True)
class _Listing:
    sql: str  # for asyncpg: ``$n`` parameters
    names: tuple[str, ...]  # the parameters' names, in order
    bound: dict[str, Any]  # the values the statement binds itself (``assignee_kind = 'team'``)


@functools.cache
def _listing(order: str, filters: frozenset[str]) -> _Listing:
    """The list statement for one shape of request (``order``: ``newest``, ``before`` a
    cursor, or ``after`` a sequence; the filters set), built and compiled once per process
    with bound parameters. Every list starts from ``visible_to``'s condition, the
    recipient organisation. A page is read with ``db.fetch``, past SQLAlchemy's execution
    and result layers (BENCHMARKS.md, "The API", fifth round)."""
    query = select(*(_c[name] for name in LISTED_COLUMNS)).where(
        _c.recipient_org_id == bindparam("org_id")
    )
    for name in sorted(filters):
        query = query.where(*_FILTER_CONDITIONS[name])
    if order == "after":
        query = query.where(_c.sequence > bindparam("after")).order_by(_c.sequence)
    else:
        if order == "before":
            # A row comparison (both columns are NOT NULL): an index condition on
            # ix_alerts_recipient_created, where the equivalent OR was a filter over every
            # row of the pages before.
            query = query.where(
                tuple_(_c.created_at, _c.id)
                < tuple_(
                    bindparam("before_created", type_=_c.created_at.type),
                    bindparam("before_id", type_=_c.id.type),
                )
            )
        query = query.order_by(_c.created_at.desc(), _c.id.desc())
    dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]  # the dialect the engine runs
    compiled = query.limit(bindparam("limit", type_=Integer)).compile(dialect=dialect)
    assert compiled.positiontup is not None
    literals = {name: value for name, value in compiled.params.items() if value is not None}
    return _Listing(str(compiled), tuple(compiled.positiontup), literals)


async def _list(
    session: AsyncSession, order: str, filters: Filters | None, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """The rows of one list statement as plain dicts of ``LISTED_COLUMNS`` (pydantic reads
    a dict's items natively)."""
    set_filters = (filters or Filters()).values()
    listing = _listing(order, frozenset(set_filters))
    values = listing.bound | set_filters | params
    rows = await fetch(session, listing.sql, *(values[name] for name in listing.names))
    return [dict(zip(LISTED_COLUMNS, row, strict=True)) for row in rows]


async def page_for_org(
    session: AsyncSession,
    org_id: str,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
    filters: Filters | None = None,
) -> list[dict[str, Any]]:
    """Newest first; keyset pagination on (created_at, id) so new alerts never shift a page.
    Each a dict of ``LISTED_COLUMNS``."""
    params: dict[str, Any] = {"org_id": org_id, "limit": limit}
    if before is None:
        return await _list(session, "newest", filters, params)
    params |= {"before_created": before[0], "before_id": before[1]}
    return await _list(session, "before", filters, params)


async def get_for_org(session: AsyncSession, org_id: str, alert_id: uuid.UUID) -> Alert | None:
    rows = await session.execute(visible_to(org_id).where(Alert.id == alert_id))
    return rows.scalar_one_or_none()


async def evidence_of(session: AsyncSession, alert_id: uuid.UUID) -> list[AlertEvidence]:
    rows = await session.execute(
        select(AlertEvidence)
        .where(AlertEvidence.alert_id == alert_id)
        .order_by(AlertEvidence.added_at)
    )
    return list(rows.scalars())


async def after_sequence(
    session: AsyncSession, org_id: str, after: int, *, limit: int, filters: Filters | None = None
) -> list[dict[str, Any]]:
    """Ascending sequence from ``after`` (exclusive): how a subscriber fills gaps. Each a
    dict of ``LISTED_COLUMNS``."""
    return await _list(
        session, "after", filters, {"org_id": org_id, "after": after, "limit": limit}
    )


async def lock_for_org(session: AsyncSession, org_id: str, alert_id: uuid.UUID) -> Alert | None:
    """The alert, row-locked for a status change (the change's transaction holds it)."""
    rows = await session.execute(visible_to(org_id).where(Alert.id == alert_id).with_for_update())
    return rows.scalar_one_or_none()


async def notes_of(session: AsyncSession, alert_id: uuid.UUID) -> list[AlertNote]:
    rows = await session.execute(
        select(AlertNote).where(AlertNote.alert_id == alert_id).order_by(AlertNote.id)
    )
    return list(rows.scalars())


async def add_note(session: AsyncSession, alert_id: uuid.UUID, author: str, body: str) -> AlertNote:
    note = AlertNote(alert_id=alert_id, author=author, text=body)
    session.add(note)
    await session.flush()
    return note


_TAKE_SEQUENCES = """
    INSERT INTO org_sequences (org_id, alert_last, event_last)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
    ON CONFLICT (org_id) DO UPDATE SET
        alert_last = org_sequences.alert_last + excluded.alert_last,
        event_last = org_sequences.event_last + excluded.event_last
    RETURNING org_id, alert_last, event_last
"""


async def take_sequences(
    session: AsyncSession, counts: Mapping[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """Advance each organisation's counters by its (alerts, events), all in one statement;
    returns each one's new last values.

    The rows are taken in the order of ``counts`` (``unnest`` gives its rows in order):
    every writer passes its organisations in id order, so two never wait on each other in
    opposite orders. The rows stay locked until the transaction ends: numbers are gapless,
    in commit order."""
    if not counts:
        return {}
    rows = await fetch(
        session,
        _TAKE_SEQUENCES,
        list(counts),
        [alerts for alerts, _ in counts.values()],
        [events for _, events in counts.values()],
    )
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


async def set_sequences(session: AsyncSession, numbered: Sequence[tuple[uuid.UUID, int]]) -> None:
    if numbered:
        await fetch(
            session,
            "UPDATE alerts SET sequence = u.sequence"
            " FROM unnest($1::uuid[], $2::bigint[]) AS u(id, sequence) WHERE alerts.id = u.id",
            [alert_id for alert_id, _ in numbered],
            [seq for _, seq in numbered],
        )


async def sequences_of(
    session: AsyncSession, alert_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    if not alert_ids:
        return {}
    rows = await session.execute(
        select(Alert.id, Alert.sequence).where(Alert.id.in_(alert_ids), Alert.sequence.is_not(None))
    )
    return {r.id: int(r.sequence) for r in rows}


async def insert_alert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Write outbox rows (one statement, the columns as arrays, in ``rows``' order)."""
    if rows:
        await fetch(
            session,
            "INSERT INTO alert_events (org_id, sequence, type, alert_id, alert_sequence, details)"
            " SELECT org_id, sequence, type, alert_id, alert_sequence, details::jsonb"
            " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::uuid[], $5::bigint[],"
            " $6::text[]) AS r(org_id, sequence, type, alert_id, alert_sequence, details)",
            *column_arrays(
                rows,
                ("org_id", "sequence", "type", "alert_id", "alert_sequence", "details"),
                json=("details",),
            ),
        )


async def undeliverable(session: AsyncSession, *, limit: int, offset: int) -> list[Alert]:
    rows = await session.execute(
        select(Alert)
        .where(Alert.recipient_org_id.is_(None))
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows.scalars())


async def due_for_escalation(
    session: AsyncSession, default_after_s: int, limit: int
) -> list[Alert]:
    """Urgent alerts still new past their organisation's escalation time, row-locked."""
    deadline = Alert.created_at + func.make_interval(
        0, 0, 0, 0, 0, 0, func.coalesce(Organisation.escalate_after_s, default_after_s)
    )
    rows = await session.execute(
        select(Alert)
        .join(Organisation, Organisation.id == Alert.recipient_org_id)
        .where(
            Alert.severity == "urgent",
            Alert.status == AlertStatus.new,
            Alert.escalated_at.is_(None),
            deadline <= func.now(),
        )
        .order_by(Alert.created_at)
        .limit(limit)
        .with_for_update(of=Alert, skip_locked=True, key_share=True)
    )
    return list(rows.scalars())
