"""alerts workflow and delivery: per-organisation sequences, notes, the alert-event
outbox, webhook subscriptions, messages and attempts; escalation time per organisation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 15:22:14.516108
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "org_sequences",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("alert_last", sa.BigInteger(), nullable=False),
        sa.Column("event_last", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_org_sequences_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_org_sequences")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(length=40), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_subscriptions_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    op.create_index(op.f("ix_subscriptions_org_id"), "subscriptions", ["org_id"], unique=False)
    op.create_table(
        "webhook_messages",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("event_sequence", sa.BigInteger(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_webhook_messages_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_messages")),
    )
    op.create_index(
        "ix_webhook_messages_due",
        "webhook_messages",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "uq_webhook_messages_subscription_event",
        "webhook_messages",
        ["subscription_id", "event_sequence"],
        unique=True,
    )
    op.create_table(
        "alert_events",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("alert_sequence", sa.BigInteger(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_events_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_alert_events_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("org_id", "sequence", name=op.f("pk_alert_events")),
    )
    op.create_index(op.f("ix_alert_events_alert_id"), "alert_events", ["alert_id"], unique=False)
    op.create_table(
        "alert_notes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_notes_alert_id_alerts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_notes")),
    )
    op.create_index(op.f("ix_alert_notes_alert_id"), "alert_notes", ["alert_id"], unique=False)
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["webhook_messages.id"],
            name=op.f("fk_webhook_attempts_message_id_webhook_messages"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_webhook_attempts_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(
        "ix_webhook_attempts_subscription_at",
        "webhook_attempts",
        ["subscription_id", "id"],
        unique=False,
    )
    op.add_column("alerts", sa.Column("sequence", sa.BigInteger(), nullable=True))
    op.add_column("alerts", sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("alerts", sa.Column("assignee_kind", sa.String(length=16), nullable=True))
    op.add_column("alerts", sa.Column("assignee", sa.String(length=200), nullable=True))
    op.add_column("alerts", sa.Column("outcome_text", sa.Text(), nullable=True))
    op.add_column("alerts", sa.Column("review_by", sa.DateTime(timezone=True), nullable=True))
    op.add_column("alerts", sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_alerts_urgent_unacknowledged",
        "alerts",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("severity = 'urgent' AND status = 'new' AND escalated_at IS NULL"),
    )
    op.create_index(
        "uq_alerts_recipient_sequence", "alerts", ["recipient_org_id", "sequence"], unique=True
    )
    op.add_column("organisations", sa.Column("escalate_after_s", sa.Integer(), nullable=True))
    # Existing alerts get a review date (the default period) and their sequence in creation
    # order; the counters start after them.
    op.execute("UPDATE alerts SET review_by = created_at + interval '90 days'")
    op.execute(
        """
        UPDATE alerts SET sequence = n.seq FROM (
            SELECT id, row_number() OVER (PARTITION BY recipient_org_id ORDER BY created_at, id) AS seq
            FROM alerts WHERE recipient_org_id IS NOT NULL
        ) AS n WHERE alerts.id = n.id
        """
    )
    op.execute(
        """
        INSERT INTO org_sequences (org_id, alert_last, event_last)
        SELECT recipient_org_id, max(sequence), 0 FROM alerts
        WHERE recipient_org_id IS NOT NULL GROUP BY recipient_org_id
        """
    )


def downgrade() -> None:
    op.drop_column("organisations", "escalate_after_s")
    op.drop_index("uq_alerts_recipient_sequence", table_name="alerts")
    op.drop_index(
        "ix_alerts_urgent_unacknowledged",
        table_name="alerts",
        postgresql_where=sa.text("severity = 'urgent' AND status = 'new' AND escalated_at IS NULL"),
    )
    op.drop_column("alerts", "escalated_at")
    op.drop_column("alerts", "review_by")
    op.drop_column("alerts", "outcome_text")
    op.drop_column("alerts", "assignee")
    op.drop_column("alerts", "assignee_kind")
    op.drop_column("alerts", "acknowledged_at")
    op.drop_column("alerts", "sequence")
    op.drop_index("ix_webhook_attempts_subscription_at", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index(op.f("ix_alert_notes_alert_id"), table_name="alert_notes")
    op.drop_table("alert_notes")
    op.drop_index(op.f("ix_alert_events_alert_id"), table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_index("uq_webhook_messages_subscription_event", table_name="webhook_messages")
    op.drop_index(
        "ix_webhook_messages_due",
        table_name="webhook_messages",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("webhook_messages")
    op.drop_index(op.f("ix_subscriptions_org_id"), table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_table("org_sequences")
