"""identity and household graph: demographics blocking keys, possible matches, merges,
enrolments

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 15:22:50.423501
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enrolments",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("school_urn", sa.String(length=6), nullable=False),
        sa.Column("dsl_org_id", sa.String(length=200), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_enrolments_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolments")),
    )
    op.create_index(op.f("ix_enrolments_person_id"), "enrolments", ["person_id"], unique=False)
    op.create_index(op.f("ix_enrolments_school_urn"), "enrolments", ["school_urn"], unique=False)
    op.create_table(
        "identity_merges",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("survivor_id", sa.BigInteger(), nullable=False),
        sa.Column("merged_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("evidence", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("moved_identifiers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("moved_events", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merged_id"], ["persons.id"], name=op.f("fk_identity_merges_merged_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["survivor_id"], ["persons.id"], name=op.f("fk_identity_merges_survivor_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_merges")),
    )
    op.create_index(
        op.f("ix_identity_merges_merged_id"), "identity_merges", ["merged_id"], unique=False
    )
    op.create_index(
        op.f("ix_identity_merges_survivor_id"), "identity_merges", ["survivor_id"], unique=False
    )
    op.create_table(
        "possible_matches",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("other_person_id", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("evidence", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("merge_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["merge_id"],
            ["identity_merges.id"],
            name=op.f("fk_possible_matches_merge_id_identity_merges"),
        ),
        sa.ForeignKeyConstraint(
            ["other_person_id"],
            ["persons.id"],
            name=op.f("fk_possible_matches_other_person_id_persons"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_possible_matches_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_possible_matches")),
    )
    op.create_index(
        "ix_possible_matches_status_created",
        "possible_matches",
        ["status", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_possible_matches_open_pair",
        "possible_matches",
        ["person_id", "other_person_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.add_column("persons", sa.Column("norm_given_name", sa.String(length=100), nullable=True))
    op.add_column("persons", sa.Column("norm_family_name", sa.String(length=100), nullable=True))
    op.add_column("persons", sa.Column("norm_postcode", sa.String(length=8), nullable=True))
    op.add_column("persons", sa.Column("family_soundex", sa.String(length=4), nullable=True))
    op.add_column("persons", sa.Column("birth_year", sa.SmallInteger(), nullable=True))
    op.add_column("persons", sa.Column("postcode_district", sa.String(length=4), nullable=True))
    op.add_column("persons", sa.Column("given_initial", sa.String(length=1), nullable=True))
    op.create_index(
        "ix_persons_block_birth_date",
        "persons",
        ["birth_date"],
        unique=False,
        postgresql_where=sa.text("merged_into IS NULL"),
    )
    op.create_index(
        "ix_persons_block_district_soundex",
        "persons",
        ["postcode_district", "family_soundex"],
        unique=False,
        postgresql_where=sa.text("merged_into IS NULL"),
    )
    op.create_index(
        "ix_persons_block_soundex_year",
        "persons",
        ["family_soundex", "birth_year"],
        unique=False,
        postgresql_where=sa.text("merged_into IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_persons_block_soundex_year",
        table_name="persons",
        postgresql_where=sa.text("merged_into IS NULL"),
    )
    op.drop_index(
        "ix_persons_block_district_soundex",
        table_name="persons",
        postgresql_where=sa.text("merged_into IS NULL"),
    )
    op.drop_index(
        "ix_persons_block_birth_date",
        table_name="persons",
        postgresql_where=sa.text("merged_into IS NULL"),
    )
    op.drop_column("persons", "given_initial")
    op.drop_column("persons", "postcode_district")
    op.drop_column("persons", "birth_year")
    op.drop_column("persons", "family_soundex")
    op.drop_column("persons", "norm_postcode")
    op.drop_column("persons", "norm_family_name")
    op.drop_column("persons", "norm_given_name")
    op.drop_index(
        "uq_possible_matches_open_pair",
        table_name="possible_matches",
        postgresql_where=sa.text("status = 'open'"),
    )
    op.drop_index("ix_possible_matches_status_created", table_name="possible_matches")
    op.drop_table("possible_matches")
    op.drop_index(op.f("ix_identity_merges_survivor_id"), table_name="identity_merges")
    op.drop_index(op.f("ix_identity_merges_merged_id"), table_name="identity_merges")
    op.drop_table("identity_merges")
    op.drop_index(op.f("ix_enrolments_school_urn"), table_name="enrolments")
    op.drop_index(op.f("ix_enrolments_person_id"), table_name="enrolments")
    op.drop_table("enrolments")
