"""alerts: the worker's two lookups that read every alert

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 05:10:00

Each batch asks which alerts hold its events as evidence (to mark for review those a
retraction or a late fact no longer supports) and what the closed alerts of each matched
(rule, household, recipient) hold. ``alert_evidence``'s key leads with ``alert_id`` and
the only (rule, household, recipient) index is partial over the alerts not closed, so
both read every alert: their cost grew with the table, not the batch. In a 20-second run
at 1,000 events/s over 20,000 persons (a few thousand alerts), the evidence lookup was
15% of PostgreSQL's execution time at 16.5 ms a batch. With an index on
``alert_evidence (event_id)`` and a partial one on the closed alerts' key, each can read
only the rows it asks for.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CLOSED = sa.text("status = 'closed'")


def upgrade() -> None:
    op.create_index("ix_alert_evidence_event_id", "alert_evidence", ["event_id"], unique=False)
    op.create_index(
        "ix_alerts_closed_rule_household_recipient",
        "alerts",
        ["rule_id", "household_id", "recipient_key"],
        unique=False,
        postgresql_where=_CLOSED,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_alerts_closed_rule_household_recipient", table_name="alerts", postgresql_where=_CLOSED
    )
    op.drop_index("ix_alert_evidence_event_id", table_name="alert_evidence")
