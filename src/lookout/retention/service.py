"""The retention job (``lookout retention run``): purge personal data past its period.

The policy is in docs/retention.md; the periods are settings (``LOOKOUT_RETENTION_*``).
Each batch purges at most ``retention_batch_size`` rows of one kind and records, in the
same transaction, an audit record with the count and the internal ids it purged. The
audit trail holds internal ids only, so purging never touches it and the hash chain
stays verifiable. Events keep (source, event_id, content_hash), so a replay of a purged
event is still a duplicate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout import metrics
from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.retention import repository
from lookout.settings import Settings

RETENTION = Actor(client_id="lookout-retention", purpose="retention_policy")
# Closed alerts that led to nothing: kept for ``retention_closed_nfa_alert_days``.
NO_FURTHER_ACTION = ("no_further_action",)


@dataclass
class Purged:
    events: int = 0
    alerts: int = 0
    rejections: int = 0
    batches: int = 0
    cutoffs: dict[str, str] = field(default_factory=dict)


async def _drain(
    sessions: async_sessionmaker[AsyncSession],
    purge: Callable[[AsyncSession], Awaitable[Sequence[Any]]],
    action: Action,
    object_type: str,
    cutoff: datetime,
    limit: int,
) -> tuple[int, int]:
    total = batches = 0
    while True:
        async with sessions() as session, session.begin():
            ids = await purge(session)
            if ids:
                await record(
                    session,
                    RETENTION,
                    [
                        Entry(
                            action,
                            object_type,
                            None,
                            details={
                                "count": len(ids),
                                "ids": [str(i) for i in ids],
                                "before": cutoff.isoformat(),
                            },
                        )
                    ],
                )
        total += len(ids)
        batches += 1 if ids else 0
        metrics.RETENTION_PURGED.labels(object_type).inc(len(ids))
        if len(ids) < limit:
            return total, batches


async def run_retention(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> Purged:
    """Purge everything past its period as of ``now``; one transaction per batch."""
    limit = settings.retention_batch_size
    out = Purged()
    events_before = now - timedelta(days=settings.retention_event_data_days)
    alerts_before = now - timedelta(days=settings.retention_closed_nfa_alert_days)
    rejections_before = now - timedelta(days=settings.retention_rejection_raw_days)
    out.cutoffs = {
        "events": events_before.isoformat(),
        "alerts": alerts_before.isoformat(),
        "rejections": rejections_before.isoformat(),
    }
    out.alerts, n = await _drain(
        sessions,
        lambda s: repository.purge_closed_alerts(s, NO_FURTHER_ACTION, alerts_before, limit),
        Action.retention_alerts_purged,
        "alert",
        alerts_before,
        limit,
    )
    out.batches += n
    out.rejections, n = await _drain(
        sessions,
        lambda s: repository.purge_rejections(s, rejections_before, limit),
        Action.retention_rejections_purged,
        "rejection",
        rejections_before,
        limit,
    )
    out.batches += n
    out.events, n = await _drain(
        sessions,
        lambda s: repository.purge_event_data(s, events_before, limit),
        Action.retention_events_purged,
        "event",
        events_before,
        limit,
    )
    out.batches += n
    return out
