"""Raising alerts from rule candidates, with suppression, inside the batch transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from lookout import metrics
from lookout.alerts import repository
from lookout.audit.actions import Action
from lookout.audit.service import Entry
from lookout.rules.evaluator import Candidate, TriggerEvent


@dataclass(frozen=True, slots=True)
class Raised:
    alert_id: uuid.UUID
    recipient_org_id: str | None
    trigger_time: datetime


async def apply(
    session: AsyncSession, matches: Sequence[tuple[TriggerEvent, Candidate]], audit: list[Entry]
) -> list[Raised]:
    """Turn each (trigger event, candidate) into a new alert or evidence on the open one.

    An open alert for (rule, household, recipient) absorbs further matches; after it is
    closed, a match raises a new alert only if its event is not already evidence of the
    closed alert and it falls outside the rule's cool-down after the closure."""
    raised: list[Raised] = []
    recipients = await repository.children_services_by_la(
        session, (c.recipient_key.split(":", 1)[1] for _, c in matches)
    )
    for event, candidate in sorted(matches, key=lambda m: (m[0].time, m[0].event_pk, m[1].rule.id)):
        rule = candidate.rule
        key = (rule.id, candidate.household_id, candidate.recipient_key)
        alert_id = await repository.open_alert_id(session, *key)
        if alert_id is None:
            cooldown_start = event.time - timedelta(days=rule.spec.cooldown_days)
            if await repository.suppressed_by_closed(session, *key, event.event_pk, cooldown_start):
                continue
            org_id = recipients.get(candidate.recipient_key.split(":", 1)[1])
            alert_id = await repository.insert_open_alert(
                session,
                {
                    "id": uuid.uuid4(),
                    "rule_id": rule.id,
                    "rule_version": rule.version,
                    "severity": rule.spec.severity.value,
                    "household_id": candidate.household_id,
                    "recipient_key": candidate.recipient_key,
                    "recipient_org_id": org_id,
                    "summary": " ".join(rule.spec.summary.split()),
                    "children": list(candidate.children),
                    "explanation": candidate.explanation,
                    "trigger_event_id": event.event_pk,
                    "trigger_time": event.time,
                },
            )
            if alert_id is not None:
                await repository.add_evidence(session, alert_id, event.event_pk, "trigger")
                raised.append(Raised(alert_id, org_id, event.time))
                kind = candidate.recipient_key.split(":", 1)[0]
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
                            "household_id": candidate.household_id,
                            "recipient_org_id": org_id,
                            "trigger_event": event.event_pk,
                        },
                    )
                )
                continue
            # Another worker opened it between our two statements: absorb instead.
            alert_id = await repository.open_alert_id(session, *key)
            if alert_id is None:
                continue
        if await repository.add_evidence(session, alert_id, event.event_pk, "match"):
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
