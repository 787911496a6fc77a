"""alert_evidence: the children each piece of evidence named when last evaluated

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 23:00:00

An alert names the children of every match it absorbed, and children are never removed.
A late fact (a child's residence ended before the event) can leave an alert naming a
child that none of its events, evaluated again, still names. To tell, each evidence row
keeps the children its event named for that alert when it was last evaluated (an empty
list: it no longer matches). Rows written before this revision hold NULL: unknown, and an
alert with such a row is not checked.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "alert_evidence",
        sa.Column("children", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("alert_evidence", "children")
