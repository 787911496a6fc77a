"""Operator control of the stored consumer offsets (``lookout offsets``).

A worker stops a partition whose stored offset lies beyond the log end (same broker
cluster); only an operator decides where it resumes, and that decision is audited."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.errors import Conflict, LookoutError
from lookout.ingest import repository
from lookout.ingest.repository import Position


@dataclass(frozen=True, slots=True)
class PartitionView:
    partition: int
    stored: Position | None
    log_end: int

    @property
    def beyond_end(self) -> bool:
        return (
            self.stored is not None and self.log_end >= 0 and self.stored.next_offset > self.log_end
        )


async def move(
    session: AsyncSession,
    actor: Actor,
    *,
    group_id: str,
    topic: str,
    partition: int,
    cluster_id: str,
    to: int,
    log_end: int,
    reason: str,
) -> Position:
    """Set the stored offset of one partition (compare-and-set against what is stored)."""
    if not reason.strip():
        raise LookoutError("say why (--reason): the move is audited")
    if to < 0 or (log_end >= 0 and to > log_end):
        raise LookoutError(f"offset {to} is outside the log (0 .. {log_end})")
    stored = (await repository.stored_positions(session, group_id, topic, [partition])).get(
        partition
    )
    new = Position(cluster_id, to)
    if not await repository.compare_and_set_offset(
        session, group_id, topic, partition, stored, new
    ):
        raise Conflict("the stored offset changed meanwhile: look again with `lookout offsets`")
    await record(
        session,
        actor,
        [
            Entry(
                Action.offset_moved,
                "partition",
                f"{topic}[{partition}]",
                details={
                    "from": stored.next_offset if stored else None,
                    "to": to,
                    "log_end": log_end,
                    "reason": reason,
                },
            )
        ],
    )
    return new
