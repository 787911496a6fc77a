"""Raising alerts from rule candidates, with suppression, inside the batch transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lookout import metrics
from lookout.alerts import repository
from lookout.alerts.models import Alert, AlertNote, AlertStatus, AssigneeKind, Outcome
from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.delivery.models import EventType
from lookout.errors import Conflict, LookoutError, NotFound
from lookout.rules.evaluator import Candidate, TriggerEvent


@dataclass(frozen=True, slots=True)
class Raised:
    alert_id: uuid.UUID
    recipient_org_id: str | None
    trigger_time: datetime


@dataclass(slots=True)
class Target:
    """An alert that matches of one apply write to: an open one, or one it raises."""

    id: uuid.UUID
    new: bool
    children: set[int]
    # The values of a raised alert's insert (children and explanation kept up to date).
    values: dict[str, Any] | None = None
    # An open alert's children to add and the explanation to set, when matches add any.
    explanation: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One match, as apply treats it: it raises ``target`` or is evidence for it."""

    raises: bool
    event: TriggerEvent
    candidate: Candidate
    target: Target


def plan(
    matches: Sequence[tuple[TriggerEvent, Candidate]],
    open_alerts: Mapping[repository.AlertKey, repository.OpenAlert],
    closed: Mapping[repository.AlertKey, repository.ClosedAlerts],
    recipients: Mapping[str, str],
    *,
    review_by: datetime | None = None,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> list[Step]:
    """Pure: what :func:`apply` does with each match, given the open alerts of their keys
    and what the closed ones hold, taking the matches one at a time in (event time, event,
    rule) order exactly as statements per match would.

    An open alert for (rule, household, recipient), or one raised by an earlier match of
    the same call, absorbs the match as evidence and adds the children it names (the
    explanation becomes that match's when it adds any). Otherwise the match raises a new
    alert, unless a closed alert of the key holds its event already or was closed within
    the rule's cool-down before the event. Suppressed matches have no step."""
    targets: dict[repository.AlertKey, Target] = {}
    steps: list[Step] = []
    for event, candidate in sorted(matches, key=lambda m: (m[0].time, m[0].event_pk, m[1].rule.id)):
        rule, key = candidate.rule, _key(candidate)
        target = targets.get(key)
        if target is None and (found := open_alerts.get(key)) is not None:
            target = targets[key] = Target(found.id, False, set(found.children))
        if target is None:
            history = closed.get(key)
            cooldown_start = event.time - timedelta(days=rule.spec.cooldown_days)
            if history is not None and (
                event.event_pk in history.evidence
                or (history.last_closed is not None and history.last_closed > cooldown_start)
            ):
                continue
            alert_id = new_id()
            target = targets[key] = Target(alert_id, True, set(candidate.children))
            target.values = {
                "id": alert_id,
                "rule_id": rule.id,
                "rule_version": rule.version,
                "severity": rule.spec.severity.value,
                "household_id": candidate.household_id,
                "recipient_key": candidate.recipient_key,
                "recipient_org_id": recipients.get(candidate.recipient_key),
                "summary": candidate.summary or " ".join(rule.spec.summary.split()),
                "children": list(candidate.children),
                "explanation": candidate.explanation,
                "trigger_event_id": event.event_pk,
                "trigger_time": event.time,
                "review_by": review_by,
            }
            steps.append(Step(True, event, candidate, target))
            continue
        added = set(candidate.children)
        if added and not added <= target.children:
            target.children |= added
            if target.values is not None:
                target.values["children"] = sorted(target.children)
                target.values["explanation"] = candidate.explanation
            else:
                target.explanation = candidate.explanation
        steps.append(Step(False, event, candidate, target))
    return steps


async def apply(
    session: AsyncSession,
    matches: Sequence[tuple[TriggerEvent, Candidate]],
    audit: list[Entry],
    *,
    review_by: datetime | None = None,
) -> list[Raised]:
    """Turn each (trigger event, candidate) into a new alert or evidence on the open one.

    An open alert for (rule, household, recipient) absorbs further matches; after it is
    closed, a match raises a new alert only if its event is not already evidence of the
    closed alert and it falls outside the rule's cool-down after the closure.

    A handful of statements whatever the number of matches: read the open and closed
    alerts of every key, decide in Python (:func:`plan`), then insert the new alerts, add
    children, and insert the evidence, each as one multi-row statement."""
    if not matches:
        return []
    keys = {_key(c) for _, c in matches}
    recipients = await repository.recipients(session, {c.recipient_key for _, c in matches})
    found = await repository.open_alerts(session, keys)
    closed = await repository.closed_alerts(
        session, keys - found.keys(), {e.event_pk for e, _ in matches}
    )
    steps: list[Step] = []
    pending = list(matches)
    while pending:
        planned = plan(pending, found, closed, recipients, review_by=review_by)
        new = [s.target.values for s in planned if s.target.values is not None and s.raises]
        inserted = await repository.insert_open_alerts(session, new)
        lost = {_key(s.candidate) for s in planned if s.raises and s.target.id not in inserted}
        # Another writer opened these keys first: their matches are evidence on its alert
        # (planned again against it; rare).
        steps += [s for s in planned if _key(s.candidate) not in lost]
        pending = [(s.event, s.candidate) for s in planned if _key(s.candidate) in lost]
        found = await repository.open_alerts(session, lost) if lost else {}
    steps.sort(key=lambda s: (s.event.time, s.event.event_pk, s.candidate.rule.id))
    await repository.add_children(
        session,
        [
            (t.id, sorted(t.children), t.explanation)
            for t in {id(s.target): s.target for s in steps}.values()
            if not t.new and t.explanation is not None
        ],
    )
    added = await repository.add_evidence(
        session,
        [
            (
                s.target.id,
                s.event.event_pk,
                "trigger" if s.raises else "match",
                s.candidate.children,
            )
            for s in steps
        ],
    )
    raised: list[Raised] = []
    reported: set[tuple[uuid.UUID, int]] = set()
    for step in steps:
        rule, event, alert_id = step.candidate.rule, step.event, step.target.id
        if step.raises:
            org_id = recipients.get(step.candidate.recipient_key)
            raised.append(Raised(alert_id, org_id, event.time))
            kind = step.candidate.recipient_key.split(":", 1)[0]
            metrics.ALERTS_RAISED.labels(
                rule.id, rule.version[:12], rule.spec.severity.value, kind
            ).inc()
            if org_id is None:
                metrics.ALERTS_UNDELIVERABLE.labels(rule.id).inc()
            audit.append(
                Entry(
                    Action.alert_raised,
                    "alert",
                    str(alert_id),
                    outcome="raised" if org_id else "undeliverable",
                    details={
                        "rule_id": rule.id,
                        "rule_version": rule.version,
                        "household_id": step.candidate.household_id,
                        "recipient_org_id": org_id,
                        "trigger_event": event.event_pk,
                    },
                )
            )
            reported.add((alert_id, event.event_pk))
            continue
        pair = (alert_id, event.event_pk)
        if pair in added and pair not in reported:
            reported.add(pair)
            metrics.ALERT_EVIDENCE_ADDED.labels(rule.id).inc()
            audit.append(
                Entry(
                    Action.alert_evidence_added,
                    "alert",
                    str(alert_id),
                    details={"event": event.event_pk},
                )
            )
    return raised


def _key(candidate: Candidate) -> repository.AlertKey:
    return (candidate.rule.id, candidate.household_id, candidate.recipient_key)


@dataclass(frozen=True, slots=True)
class Change:
    """A change to an existing alert that its recipient must hear about (``alert.updated``
    or ``alert.escalated``)."""

    alert_id: uuid.UUID
    org_id: str | None
    type: EventType
    details: dict[str, Any]


async def mark_for_review(
    session: AsyncSession, alert_ids: Sequence[uuid.UUID], reason: str
) -> list[Change]:
    """Mark alerts for review (never delete them); the caller passes the changes to
    :func:`publish` so recipients are told."""
    marked = await repository.mark_for_review(session, alert_ids, reason)
    return [
        Change(alert_id, org_id, EventType.updated, {"change": "marked_for_review"})
        for alert_id, org_id in marked
    ]


FALSIFIED = "its conditions no longer hold: a later fact changed the picture (re-evaluated)"
CHILD_UNSUPPORTED = (
    "it names a child that none of its events names now: a later fact changed the household "
    "(re-evaluated)"
)


async def review_unsupported(
    session: AsyncSession,
    evaluated: set[int],
    supported: Mapping[tuple[int, str, int, str], frozenset[int]],
    rule_ids: set[str],
    audit: list[Entry],
) -> list[Change]:
    """Mark for review (never delete) every alert that a late fact (a residence ended
    before the event, a relationship, a flag, an enrolment, an identity change) undermined,
    as this re-evaluation shows:

    - its evidence was all just re-evaluated and none of it still matches (its conditions
      no longer hold);
    - or it names a child that none of its evidence names now (children are never removed
      from an alert).

    ``supported`` holds, for (event, rule, household, recipient key) of every match of
    this evaluation, the children the match names. Evidence not in ``evaluated`` keeps
    what it named when last evaluated (it was not looked at again: nothing it reads
    changed). Each re-evaluated evidence row records what it names now. Alerts of rules no
    longer in the live set are left alone."""
    falsified: list[uuid.UUID] = []
    child_gone: list[uuid.UUID] = []
    now_named: list[tuple[uuid.UUID, int, frozenset[int]]] = []
    for a in await repository.unreviewed_alerts_with_evidence(session, evaluated):
        if a.rule_id not in rule_ids:
            continue
        named = {
            e: supported.get((e, a.rule_id, a.household_id, a.recipient_key), frozenset())
            if e in evaluated
            else before
            for e, before in a.evidence.items()
        }
        if all(
            e in evaluated and (e, a.rule_id, a.household_id, a.recipient_key) not in supported
            for e in named
        ):
            falsified.append(a.id)
            continue
        now_named += [(a.id, e, named[e] or frozenset()) for e in a.evidence if e in evaluated]
        known = [n for n in named.values() if n is not None]
        if len(known) == len(named) and not a.children <= frozenset().union(*known):
            child_gone.append(a.id)
    await repository.set_evidence_children(session, now_named)
    changes: list[Change] = []
    for ids, reason, label in (
        (falsified, FALSIFIED, "falsified"),
        (child_gone, CHILD_UNSUPPORTED, "child_unsupported"),
    ):
        if not ids:
            continue
        audit.extend(
            Entry(Action.alert_marked_for_review, "alert", str(a), details={"reason": label})
            for a in ids
        )
        metrics.ALERTS_MARKED_FOR_REVIEW.labels(label).inc(len(ids))
        changes += await mark_for_review(session, ids, reason)
    return changes


async def publish(
    session: AsyncSession, raised: Sequence[Raised], changes: Sequence[Change] = ()
) -> None:
    """Number new alerts and write the outbox rows (``alert_events``) for them and for
    ``changes``, in the caller's transaction.

    The counter rows of all the organisations concerned are advanced in one statement, in
    id order and after every other write of the transaction, so two writers never wait on
    each other in opposite orders. The lock on the counter row is what makes the sequences
    gapless and visible in commit order; it serialises alert writes per organisation only."""
    new_by_org: dict[str, list[uuid.UUID]] = {}
    for r in raised:
        if r.recipient_org_id is not None:
            new_by_org.setdefault(r.recipient_org_id, []).append(r.alert_id)
    changes_by_org: dict[str, list[Change]] = {}
    for c in changes:
        if c.org_id is not None:
            changes_by_org.setdefault(c.org_id, []).append(c)
    known = await repository.sequences_of(session, [c.alert_id for c in changes])
    work: dict[str, tuple[list[uuid.UUID], list[Change]]] = {}
    for org_id in sorted(new_by_org.keys() | changes_by_org.keys()):
        new = new_by_org.get(org_id, [])
        changed = [
            c for c in changes_by_org.get(org_id, []) if c.alert_id in known or c.alert_id in new
        ]
        work[org_id] = (new, changed)
    last = await repository.take_sequences(
        session, {org: (len(new), len(new) + len(changed)) for org, (new, changed) in work.items()}
    )
    numbered: list[tuple[uuid.UUID, int]] = []
    events: list[dict[str, Any]] = []
    for org_id, (new, changed) in work.items():
        alert_last, event_last = last[org_id]
        mine = list(zip(new, range(alert_last - len(new) + 1, alert_last + 1), strict=True))
        numbered += mine
        known.update(mine)
        sequence = event_last - len(new) - len(changed)
        for alert_id, alert_sequence in mine:
            sequence += 1
            events.append(
                _event_row(org_id, sequence, EventType.created, alert_id, alert_sequence, {})
            )
        for c in changed:
            sequence += 1
            events.append(
                _event_row(org_id, sequence, c.type, c.alert_id, known[c.alert_id], c.details)
            )
    await repository.set_sequences(session, numbered)
    await repository.insert_alert_events(session, events)


def _event_row(
    org_id: str,
    sequence: int,
    type_: EventType,
    alert_id: uuid.UUID,
    alert_sequence: int,
    details: dict[str, Any],
) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "sequence": sequence,
        "type": type_.value,
        "alert_id": alert_id,
        "alert_sequence": alert_sequence,
        "details": details,
    }


# The recipient's workflow ------------------------------------------------------------


async def _locked(session: AsyncSession, actor: Actor, alert_id: uuid.UUID) -> Alert:
    assert actor.org_id is not None
    alert = await repository.lock_for_org(session, actor.org_id, alert_id)
    if alert is None:
        await record(
            session, actor, [Entry(Action.request_denied, "alert", str(alert_id), "not_found")]
        )
        raise NotFound("no such alert for your organisation")
    return alert


async def _changed(
    session: AsyncSession, actor: Actor, alert: Alert, action: Action, details: dict[str, Any]
) -> None:
    """Record the change in the audit trail and tell the recipient (``alert.updated``)."""
    alert.updated_at = datetime.now(UTC)
    await session.flush()
    metrics.ALERT_STATUS_CHANGES.labels(action.value.rsplit(":", 1)[1]).inc()
    await record(session, actor, [Entry(action, "alert", str(alert.id), details=details)])
    await publish(
        session, [], [Change(alert.id, alert.recipient_org_id, EventType.updated, details)]
    )


async def acknowledge(session: AsyncSession, actor: Actor, alert_id: uuid.UUID) -> Alert:
    alert = await _locked(session, actor, alert_id)
    if alert.status != AlertStatus.new:
        raise Conflict(
            f"the alert is {alert.status}: only a new alert can be acknowledged",
            status_now=alert.status,
        )
    alert.status = AlertStatus.acknowledged
    alert.acknowledged_at = datetime.now(UTC)
    await _changed(
        session,
        actor,
        alert,
        Action.alert_acknowledged,
        {"change": "status", "status": "acknowledged"},
    )
    return alert


async def assign(
    session: AsyncSession, actor: Actor, alert_id: uuid.UUID, kind: AssigneeKind, name: str
) -> Alert:
    alert = await _locked(session, actor, alert_id)
    if alert.status == AlertStatus.closed:
        raise Conflict(
            "the alert is closed: a closed alert cannot be assigned", status_now=alert.status
        )
    alert.assignee_kind, alert.assignee = kind.value, name
    await _changed(
        session, actor, alert, Action.alert_assigned, {"change": "assignment", "kind": kind.value}
    )
    return alert


async def close(
    session: AsyncSession, actor: Actor, alert_id: uuid.UUID, outcome: Outcome, text: str | None
) -> Alert:
    if outcome is Outcome.other and not (text and text.strip()):
        raise LookoutError("outcome 'other' needs a text saying what happened")
    alert = await _locked(session, actor, alert_id)
    if alert.status == AlertStatus.closed:
        raise Conflict("the alert is already closed", status_now=alert.status)
    alert.status = AlertStatus.closed
    alert.closed_at = datetime.now(UTC)
    alert.outcome, alert.outcome_text = outcome.value, text
    await _changed(
        session,
        actor,
        alert,
        Action.alert_closed,
        {"change": "status", "status": "closed", "outcome": outcome.value},
    )
    return alert


async def add_note(
    session: AsyncSession, actor: Actor, alert_id: uuid.UUID, body: str
) -> AlertNote:
    alert = await _locked(session, actor, alert_id)
    note = await repository.add_note(session, alert.id, actor.end_user or "", body)
    await _changed(
        session, actor, alert, Action.alert_note_added, {"change": "note", "note": note.id}
    )
    return note


async def escalate_due(
    session: AsyncSession, actor: Actor, default_after_s: int, limit: int
) -> int:
    """Escalate urgent alerts not acknowledged in their organisation's time (dispatcher)."""
    due = await repository.due_for_escalation(session, default_after_s, limit)
    now = datetime.now(UTC)
    for alert in due:
        alert.escalated_at = now
    await session.flush()
    await record(
        session,
        actor,
        [
            Entry(
                Action.alert_escalated, "alert", str(a.id), details={"org_id": a.recipient_org_id}
            )
            for a in due
        ],
    )
    await publish(
        session,
        [],
        [
            Change(a.id, a.recipient_org_id, EventType.escalated, {"change": "escalated"})
            for a in due
        ],
    )
    metrics.ESCALATIONS.inc(len(due))
    return len(due)
