"""``lookout status``: one screen for an operator on call.

Lag is measured against the log end taken from a fetch's high-water mark (the bundled
broker's ListOffsets under-reports it), from the offsets the workers committed in PostgreSQL.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from lookout import kafka
from lookout.alerts import repository as alerts_repository
from lookout.audit import repository as audit_repository
from lookout.db import create_engine, session_factory
from lookout.delivery import repository as delivery_repository
from lookout.ingest import repository as ingest
from lookout.settings import Settings


@dataclass
class Status:
    cluster_id: str = ""
    partitions: list[tuple[int, int | None, int | None]] = field(default_factory=list)
    rejections: int = 0
    dlq_pending: int = 0
    last_event_by_source: list[tuple[str, datetime]] = field(default_factory=list)
    open_alerts: dict[str, int] = field(default_factory=dict)
    undeliverable: int = 0
    webhooks_disabled: int = 0
    last_checkpoint: tuple[int, datetime] | None = None  # (seq, signed at)


async def gather(settings: Settings) -> Status:
    status = Status(cluster_id=await kafka.cluster_id(settings.kafka_bootstrap_servers))
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            stored = await ingest.all_positions(
                session, settings.consumer_group, settings.events_topic
            )
            status.rejections, status.dlq_pending = await ingest.rejection_counts(session)
            status.last_event_by_source = await ingest.last_event_by_source(session)
            for severity, _, n in await alerts_repository.open_alert_counts(session):
                status.open_alerts[severity] = status.open_alerts.get(severity, 0) + n
            status.undeliverable = await alerts_repository.undeliverable_count(session)
            status.webhooks_disabled = await delivery_repository.disabled_count(session)
            checkpoint = await audit_repository.last_checkpoint(session)
            if checkpoint is not None:
                status.last_checkpoint = (checkpoint.seq, checkpoint.created_at)
    finally:
        await engine.dispose()
    current = {
        p: pos.next_offset for p, pos in stored.items() if pos.cluster_id == status.cluster_id
    }
    ends = await kafka.log_ends(settings.kafka_bootstrap_servers, settings.events_topic, current)
    for partition, end in sorted(ends.items()):
        committed = current.get(partition, 0)
        status.partitions.append((partition, committed, end - committed if end >= 0 else None))
    return status


def render(status: Status, settings: Settings) -> str:
    lines = [
        f"Lookout status  (broker cluster {status.cluster_id}, topic {settings.events_topic})",
        "",
    ]
    lines.append("partition  committed  lag")
    for partition, committed, lag in status.partitions:
        lines.append(f"{partition:>9}  {committed:>9}  {'?' if lag is None else lag}")
    total = sum(lag or 0 for _, _, lag in status.partitions)
    lines += ["", f"total lag: {total}"]
    lines.append(f"rejections (DLQ): {status.rejections}  (copies pending: {status.dlq_pending})")
    lines.append(
        "open alerts: "
        + (", ".join(f"{k} {v}" for k, v in sorted(status.open_alerts.items())) or "none")
        + f"  (undeliverable: {status.undeliverable})"
    )
    lines.append(f"webhook subscriptions disabled: {status.webhooks_disabled}")
    if status.last_checkpoint is None:
        lines.append("last audit checkpoint: none yet (is `lookout sealer` running?)")
    else:
        seq, at = status.last_checkpoint
        lines.append(f"last audit checkpoint: seq {seq} at {at:%Y-%m-%d %H:%M:%S %Z}")
    lines += ["", "last event accepted per source:"]
    for source, at in status.last_event_by_source:
        lines.append(f"  {at:%Y-%m-%d %H:%M:%S %Z}  {source}")
    if not status.last_event_by_source:
        lines.append("  (none yet)")
    return "\n".join(lines)


def run(settings: Settings) -> str:
    return render(asyncio.run(gather(settings)), settings)
