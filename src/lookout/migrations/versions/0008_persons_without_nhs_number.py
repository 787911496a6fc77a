"""persons: the demographic blocks of the persons who hold no NHS number

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 02:40:00

A reference whose NHS number is new to Lookout is matched on demographics against the
persons who hold no NHS number (one who holds another is another person). Nearly every
person holds one, so each block (same date of birth; same family-name Soundex and birth
year; same postcode district and Soundex) was read whole and almost every row was left
out by a probe of ``person_identifiers``: the cost grew with the block. At 100,000 persons,
with newcomers that share one name and date of birth (``benchmarks.identity_bench``),
linking ran at 2,174 references a second before this migration and 9,750 after.
``persons.has_nhs_number`` is kept by a trigger on ``person_identifiers`` (every
insert, move and delete of an NHS number, whichever code path makes it), and the three
block indexes are repeated as partial indexes over the live persons without one, which
are few. The exact probe stays in the query: the flag only narrows what is read.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WITHOUT = sa.text("merged_into IS NULL AND NOT has_nhs_number")
_BLOCKS = (
    ("birth_date", ["birth_date"]),
    ("soundex_year", ["family_soundex", "birth_year"]),
    ("district_soundex", ["postcode_district", "family_soundex"]),
)

# Statement-level, with transition tables: one UPDATE per statement however many rows it
# wrote (a population COPY included). A flag is only set by a row that gives a person an
# NHS number, and only cleared when the person holds none after the statement.
_SYNC = """
CREATE FUNCTION persons_sync_has_nhs_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE persons p SET has_nhs_number = false
        WHERE p.has_nhs_number
          AND p.id IN (SELECT person_id FROM old_rows WHERE scheme = 'nhs_number')
          AND NOT EXISTS (
              SELECT 1 FROM person_identifiers i
              WHERE i.person_id = p.id AND i.scheme = 'nhs_number');
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE persons p SET has_nhs_number = true
        WHERE NOT p.has_nhs_number
          AND p.id IN (SELECT person_id FROM new_rows WHERE scheme = 'nhs_number');
    END IF;
    RETURN NULL;
END
$$
"""
_TRIGGERS = (
    ("insert", "INSERT", "NEW TABLE AS new_rows"),
    ("update", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("delete", "DELETE", "OLD TABLE AS old_rows"),
)


def upgrade() -> None:
    op.add_column(
        "persons",
        sa.Column("has_nhs_number", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute(
        "UPDATE persons p SET has_nhs_number = true WHERE EXISTS ("
        " SELECT 1 FROM person_identifiers i WHERE i.person_id = p.id AND i.scheme = 'nhs_number')"
    )
    op.execute(_SYNC)
    for name, event, tables in _TRIGGERS:
        op.execute(
            f"CREATE TRIGGER persons_has_nhs_number_{name} AFTER {event} ON person_identifiers"
            f" REFERENCING {tables} FOR EACH STATEMENT"
            " EXECUTE FUNCTION persons_sync_has_nhs_number()"
        )
    for name, columns in _BLOCKS:
        op.create_index(
            f"ix_persons_block_{name}_without_nhs",
            "persons",
            columns,
            unique=False,
            postgresql_where=_WITHOUT,
        )


def downgrade() -> None:
    for name, _ in _BLOCKS:
        op.drop_index(f"ix_persons_block_{name}_without_nhs", table_name="persons")
    for name, _, _ in _TRIGGERS:
        op.execute(f"DROP TRIGGER persons_has_nhs_number_{name} ON person_identifiers")
    op.execute("DROP FUNCTION persons_sync_has_nhs_number()")
    op.drop_column("persons", "has_nhs_number")
