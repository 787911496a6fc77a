"""tamper-evident audit: sequence assigned after the xid, append-only audit tables,
seals (hash chain) and signed checkpoints; retention markers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_TABLES = ("audit_records", "audit_seals", "audit_checkpoints")


def upgrade() -> None:
    # 1. audit_records.seq comes from a plain sequence set by a BEFORE INSERT trigger that
    #    first gives the writing transaction its xid (recorded in ``xid``) and only then
    #    takes the sequence number. "Every transaction holding a seq <= H had an xid before
    #    H was handed out" is what makes the sealer's fence sound (lookout.audit.sealer).
    op.execute("ALTER TABLE audit_records ALTER COLUMN seq DROP IDENTITY IF EXISTS")
    op.execute("CREATE SEQUENCE audit_records_seq AS bigint CACHE 1 OWNED BY audit_records.seq")
    op.execute(
        "SELECT setval('audit_records_seq', coalesce(max(seq), 0) + 1, false) FROM audit_records"
    )
    op.execute("ALTER TABLE audit_records ADD COLUMN xid xid8")
    op.execute(
        """
        CREATE FUNCTION audit_assign_seq() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.xid := pg_current_xact_id();  -- the xid first ...
            NEW.seq := nextval('audit_records_seq');  -- ... then the sequence number
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_records_assign_seq BEFORE INSERT ON audit_records "
        "FOR EACH ROW EXECUTE FUNCTION audit_assign_seq()"
    )
    op.create_index("ix_audit_records_object", "audit_records", ["object_type", "object_id"])
    op.create_index("ix_audit_records_at", "audit_records", ["at"])
    op.create_index("ix_audit_records_actor_org_id", "audit_records", ["actor_org_id"])

    # 2. The sealer's own append-only tables.
    op.create_table(
        "audit_seals",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "sealed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_seals")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    op.create_index(op.f("ix_audit_checkpoints_seq"), "audit_checkpoints", ["seq"])

    # 3. Append-only, enforced by the database: UPDATE, DELETE and TRUNCATE are refused.
    #    (Someone with DBA rights can still disable these triggers: that is the attacker
    #    the hash chain and the signed checkpoints exist for.)
    op.execute(
        """
        CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    for table in AUDIT_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
        )

    # 4. Retention: when personal data of an alert or a rejection was purged.
    op.add_column("alerts", sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("rejections", sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("rejections", "purged_at")
    op.drop_column("alerts", "purged_at")
    for table in AUDIT_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
    op.drop_index(op.f("ix_audit_checkpoints_seq"), table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_seals")
    op.drop_index("ix_audit_records_actor_org_id", table_name="audit_records")
    op.drop_index("ix_audit_records_at", table_name="audit_records")
    op.drop_index("ix_audit_records_object", table_name="audit_records")
    op.execute("DROP TRIGGER IF EXISTS audit_records_assign_seq ON audit_records")
    op.execute("DROP FUNCTION IF EXISTS audit_assign_seq()")
    op.drop_column("audit_records", "xid")
    op.execute("ALTER TABLE audit_records ALTER COLUMN seq DROP DEFAULT")
    op.execute("DROP SEQUENCE IF EXISTS audit_records_seq")
    op.execute("ALTER TABLE audit_records ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY")
    op.execute(
        "SELECT setval(pg_get_serial_sequence('audit_records', 'seq'), "
        "coalesce(max(seq), 0) + 1, false) FROM audit_records"
    )
