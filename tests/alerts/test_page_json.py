"""``page_json``: a page of ``GET /v1/alerts`` written by orjson from the validated rows is
byte for byte what FastAPI wrote from the ``AlertPage`` model (pydantic's JSON), for any
values the database can hold. The rows are as the list reads them: asyncpg's UUID type,
``timestamptz`` values in UTC, JSONB children as a list of ints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from asyncpg.pgproto.pgproto import UUID as DriverUUID
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from lookout.alerts.endpoints import page_json
from lookout.alerts.models import AssigneeKind, Outcome
from lookout.alerts.repository import LISTED_COLUMNS
from lookout.alerts.schemas import AlertOut, AlertPage

# PostgreSQL text holds any character but NUL (and no lone surrogates).
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)
BIGINT = st.integers(-(2**63), 2**63 - 1)
# timestamptz: microseconds, UTC as asyncpg returns it (PostgreSQL's range starts at 4713 BC).
WHEN = st.datetimes(min_value=datetime(1, 1, 1), timezones=st.just(UTC))


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | values


ROW = st.fixed_dictionaries(
    {
        "id": st.uuids().map(lambda u: DriverUUID(str(u))),
        "rule_id": TEXT,
        "rule_version": TEXT,
        "severity": TEXT,
        "status": TEXT,
        "household_id": BIGINT,
        "children": st.lists(BIGINT, max_size=4),
        "summary": TEXT,
        "trigger_time": WHEN,
        "created_at": WHEN,
        "updated_at": WHEN,
        "review_reason": _maybe(TEXT),
        "sequence": _maybe(BIGINT),
        "acknowledged_at": _maybe(WHEN),
        "assignee_kind": _maybe(st.sampled_from([k.value for k in AssigneeKind])),
        "assignee": _maybe(TEXT),
        "closed_at": _maybe(WHEN),
        "outcome": _maybe(st.sampled_from([o.value for o in Outcome])),
        "outcome_text": _maybe(TEXT),
        "review_by": _maybe(WHEN),
        "escalated_at": _maybe(WHEN),
    }
).map(lambda row: {name: row[name] for name in LISTED_COLUMNS})  # as the repository builds it
_ITEMS = TypeAdapter(list[AlertOut])
_PAGE = TypeAdapter(AlertPage)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(ROW, max_size=5), next_cursor=_maybe(TEXT))
def test_the_page_is_the_bytes_of_the_alert_page_model(
    rows: list[dict[str, Any]], next_cursor: str | None
) -> None:
    model = AlertPage(items=_ITEMS.validate_python(rows), next_cursor=next_cursor)
    assert page_json(rows, next_cursor) == _PAGE.dump_json(model)
