"""alerts: an index for each selective filter of GET /v1/alerts

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 23:50:00

A list is one organisation's alerts, newest first (or by sequence), optionally narrowed by
status, severity, rule or team. With only ``ix_alerts_recipient_created``, a filter value
that few of the organisation's alerts have (a small team's queue, the closed or urgent
ones, a new rule) made PostgreSQL read every alert of the organisation to find a page:
at 100,000 alerts (20,000 per organisation) ``EXPLAIN ANALYZE`` showed 44-85 ms for
status, rule and team, each a bitmap scan of the organisation's 20,000+ rows. With these
(organisation, filter value, created_at, id) indexes each is a backward index scan of the
matching rows alone, 0.2-0.3 ms. The team index holds team-assigned alerts only (the
filter is ``assignee_kind = 'team' AND assignee = :team``). The date filters need none:
they are ranges on ``ix_alerts_recipient_created`` itself.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEAM = sa.text("assignee_kind = 'team'")


def upgrade() -> None:
    for name, column in (("status", "status"), ("severity", "severity"), ("rule", "rule_id")):
        op.create_index(
            f"ix_alerts_recipient_{name}_created",
            "alerts",
            ["recipient_org_id", column, "created_at", "id"],
            unique=False,
        )
    op.create_index(
        "ix_alerts_recipient_team_created",
        "alerts",
        ["recipient_org_id", "assignee", "created_at", "id"],
        unique=False,
        postgresql_where=_TEAM,
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_recipient_team_created", table_name="alerts", postgresql_where=_TEAM)
    for name in ("rule", "severity", "status"):
        op.drop_index(f"ix_alerts_recipient_{name}_created", table_name="alerts")
